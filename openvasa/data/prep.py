"""Real talking videos -> aligned (audio, face latent) training shards.

    openvasa prep --videos ../shared/data/videos --out out/prep --workers 2

Per clip: stream the frames and track one face; cut where tracking is lost, the scene changes (a jump in
a grey thumbnail or in the landmarks), frames are missing, or a second face of comparable size appears,
and drop pieces shorter than `min_segment_s`; encode the landmarks to the face latent relative to the
clip's identity; resample to `fps` on the audio's clock by each frame's timestamp (output frame i is at
i / fps seconds after the clip's first audio sample) and smooth tracking jitter; write one shard per
segment with its raw 16 kHz audio and the per-frame features of each audio front-end.

Each finished clip leaves a record in out_dir/clips, so a run resumes where it stopped and many machines
can share a folder (`worker_index` / `worker_count`); index.json and report.md are merged from whatever
records of the current config exist.
"""

import json
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from tqdm import tqdm

from openvasa.data.clips import VIDEO_SUFFIXES, file_sha256, list_videos
from openvasa.data.config import FORMAT_VERSION, PrepConfig, basis_fingerprint, config_hash
from openvasa.data.report import write_report
from openvasa.data.shards import prep_clip
from openvasa.errors import OpenVasaError
from openvasa.face.latent import (
    FaceBasis,
    FaceLatentCodec,
)
from openvasa.face.track import FaceTracker
from openvasa.io.media import write_atomic

log = logging.getLogger(__name__)


@dataclass
class PrepReport:
    """Outcome of one prep_videos call: this worker's clips, and totals over the merged index."""

    clips: int  # this worker's share
    processed: int
    resumed: int  # already done with the same source and config
    failed: dict[str, str]  # this worker's clips without shards: file -> reason
    shards: int  # in the index
    total_minutes: float
    usable_minutes: float
    wall_seconds: float
    index_path: Path
    report_path: Path


_worker: tuple[FaceTracker, FaceLatentCodec] | None = None  # one per worker process


def _start_worker() -> None:
    global _worker
    _worker = (FaceTracker(), FaceLatentCodec())


def _prep_in_worker(path: Path, sha256: str, out_dir: Path, config: PrepConfig) -> dict:
    return prep_clip(path, sha256, out_dir, config, *_worker)


def _is_done(out_dir: Path, video: Path, sha256: str, wanted_hash: str) -> bool:
    record_path = out_dir / "clips" / f"{video.stem}.json"
    if not record_path.exists():
        return False
    record = json.loads(record_path.read_text())
    return (
        record["sha256"] == sha256
        and record["config_hash"] == wanted_hash
        and all((out_dir / s["file"]).exists() for s in record["shards"])
    )


def _collect(name: str, result: Callable[[], dict], failed: dict[str, str]) -> None:
    """Log a clip's record. An unexpected error is logged and noted in `failed`; with no record written, the
    clip is tried again on the next run."""
    try:
        record = result()
    except Exception as e:  # one bad clip must not stop a long batch
        log.exception("%s failed", name)
        failed[name] = f"{type(e).__name__}: {e}"
        return
    for cut in record["cuts"]:
        log.info("%s: cut at %.2f s (%s)", name, cut["time_s"], cut["reason"])
    for dropped in record["dropped"]:
        log.info("%s: dropped %.2f s at %.2f s (too short)", name, dropped["seconds"], dropped["start_s"])
    if record["status"] != "ok":
        log.warning("%s skipped: %s", name, record["reason"])


def prep_videos(
    video_dir: Path,
    out_dir: Path,
    config: PrepConfig,
    workers: int = 1,
    worker_index: int = 0,
    worker_count: int = 1,
    progress: bool = True,
) -> PrepReport:
    """Prepare the clips of video_dir whose sorted position % worker_count == worker_index, in `workers`
    local processes, skipping those already done; then merge out_dir/index.json and report.md."""
    if not 0 <= worker_index < worker_count:
        raise OpenVasaError(f"worker index {worker_index} is outside 0..{worker_count - 1}")
    if workers < 1:
        raise OpenVasaError(f"workers must be at least 1, got {workers}")
    started = time.monotonic()
    videos = list_videos(video_dir) if Path(video_dir).is_dir() else []
    if not videos:
        raise OpenVasaError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {video_dir}")
    for sub in ("shards", "clips"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    basis = FaceBasis.load()
    wanted = config_hash(config, basis)
    mine = [(v, file_sha256(v)) for v in videos[worker_index::worker_count]]
    todo = [(v, sha) for v, sha in mine if not _is_done(out_dir, v, sha, wanted)]
    failed: dict[str, str] = {}
    with tqdm(total=len(mine), initial=len(mine) - len(todo), disable=not progress, unit="clip") as bar:
        if workers == 1 and todo:
            with FaceTracker() as tracker:
                codec = FaceLatentCodec()
                for video, sha in todo:
                    _collect(video.name, partial(prep_clip, video, sha, out_dir, config, tracker, codec), failed)
                    bar.update()
        elif todo:
            # spawn: MediaPipe's and torch's threads in this process must not be forked into the workers.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
                futures = {pool.submit(_prep_in_worker, v, sha, out_dir, config): v for v, sha in todo}
                for future in as_completed(futures):
                    _collect(futures[future].name, future.result, failed)
                    bar.update()
    index = write_index(out_dir, config, wanted, basis_fingerprint(basis))
    names = {v.name for v, _ in mine}
    failed |= {c["file"]: c["reason"] for c in index["clips"] if c["status"] != "ok" and c["file"] in names}
    wall = time.monotonic() - started
    report_path = write_report(out_dir, index, wall)
    return PrepReport(
        clips=len(mine),
        processed=len(todo),
        resumed=len(mine) - len(todo),
        failed=failed,
        shards=len(index["shards"]),
        total_minutes=sum(c.get("seconds", 0.0) for c in index["clips"]) / 60,
        usable_minutes=sum(s["seconds"] for s in index["shards"]) / 60,
        wall_seconds=wall,
        index_path=out_dir / "index.json",
        report_path=report_path,
    )


def write_index(out_dir: Path, config: PrepConfig, wanted_hash: str, basis: str) -> dict:
    """Merge the clip records of this config found in out_dir into out_dir/index.json."""
    records = [json.loads(p.read_text()) for p in sorted((out_dir / "clips").glob("*.json"))]
    current = [r for r in records if r["config_hash"] == wanted_hash]
    index = {
        "format": FORMAT_VERSION,
        "config": asdict(config),
        "config_hash": wanted_hash,
        "basis": basis,
        "shards": [s for r in current for s in r["shards"]],
        "clips": current,
        "other_config_clips": len(records) - len(current),
    }
    write_atomic(out_dir / "index.json", json.dumps(index, indent=1).encode())
    return index
