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

import hashlib
import io
import json
import logging
import math
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path

import av
import cv2
import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from openvasa.audio.features import n_frames_for
from openvasa.audio.frontends import AudioFrontend, get_frontend
from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.detect import invert_affine, transform_points
from openvasa.face.latent import (
    EYE_OPEN,
    POSE_ANGLES,
    FaceBasis,
    FaceLatent,
    FaceLatentCodec,
    Identity,
    fit_pose,
    measure_eyes,
    rest_frame,
    to_canonical,
)
from openvasa.face.track import FaceTracker, gaussian_smooth
from openvasa.io.media import load_audio, write_atomic
from openvasa.tools.fit_basis import identity_of_clip
from openvasa.units import SAMPLE_RATE, from_pcm16, to_pcm16

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the shard contents change: every clip is then prepared again
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
SPLIT_FILE = Path(str(resources.files("openvasa") / "assets" / "split.json"))
THUMBNAIL_PX = 32
BLINK_FRACTION = 0.5  # of the clip's median eye openness
MAX_FRAME_GAP_S = 0.25  # longer gaps between frame timestamps are not interpolated over
NEUTRAL_SAMPLE = 3000  # frames searched for a clip's neutral frame, evenly spread
REPORT_FRAMES = 200_000  # frames sampled for the report's histograms
HIGH_BAND_HZ = 4.0  # above syllable rate: where tracking jitter lives, and the fastest lip motion


@dataclass(frozen=True)
class PrepConfig:
    """Settings of a prep run. All of them enter the config hash that decides whether a clip is redone."""

    fps: float = 25.0  # output frame rate
    min_segment_s: float = 2.0  # shorter segments are dropped
    scene_cut_threshold: float = 20.0  # mean abs change of a 32x32 grey thumbnail, grey levels (talking: < 13)
    landmark_jump_threshold: float = 0.3  # median rigid-point move in one frame, eye distances (talking: < 0.1)
    second_face_check_every: int = 25  # native frames between whole-frame face detections
    second_face_area: float = 0.3  # a second face box larger than this fraction of the tracked one cuts
    reframe_after_s: float = 0.5  # lost this long: search the whole frame again and choose a new framing
    pose_smoothing_frames: float = 1.0  # Gaussian sigma, output frames
    dynamics_smoothing_frames: float = 0.0  # the same for eyes, dynamics and mouth opening
    audio_frontends: tuple[str, ...] = ("energy",)


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


@dataclass
class ClipTrack:
    """One clip tracked at its own frame times. times: (N,) seconds after the first audio sample;
    landmarks: (N, 478, 3) float32 pixels of the framing in force, NaN where no face was found;
    second_face: (N,) bool; breaks: {frame: reason} where no segment may run on from the frame before."""

    times: np.ndarray
    landmarks: np.ndarray
    second_face: np.ndarray
    breaks: dict[int, str] = field(default_factory=dict)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])


def list_videos(video_dir: Path) -> list[Path]:
    return sorted(p for p in Path(video_dir).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def basis_fingerprint(basis: FaceBasis) -> str:
    """Short hash of the arrays that define the latent: shards encoded with another basis do not mix."""
    digest = hashlib.sha256()
    for array in (basis.mean, basis.eye_basis, basis.eye_mean, basis.dynamics_basis):
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return digest.hexdigest()[:16]


def config_hash(config: PrepConfig, basis: FaceBasis) -> str:
    """What a clip's shards depend on besides its source: this code's format, the settings and the basis."""
    text = json.dumps({"format": FORMAT_VERSION, "config": asdict(config), "basis": basis_fingerprint(basis)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _manifest_identity(video: Path) -> str:
    """Identity from the MANIFEST.tsv beside the clip's folder (links followed), else the file stem."""
    real = video.resolve()
    return identity_of_clip(real.parent.parent / "MANIFEST.tsv", real.name)


def clip_identity(video: Path, sha256: str) -> tuple[str, str]:
    """(identity, 'train' | 'val') of a clip: split.json's clip list by content, else MANIFEST.tsv."""
    split = json.loads(SPLIT_FILE.read_text())
    for clip in split.get("clips", []):
        if clip["sha256"] == sha256:
            return clip["identity"], clip["split"]
    identity = _manifest_identity(video)
    return identity, "val" if identity in split["validation_identities"] else "train"


def trained_identities() -> set[str]:
    """The people the shipped models were trained on (split.json's training clips): everyone else is unseen."""
    return {clip["identity"] for clip in json.loads(SPLIT_FILE.read_text())["clips"] if clip["split"] == "train"}


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


# --- tracking and cutting ---------------------------------------------------------------------------------


def timed_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time, RGB frame) of each video frame, the time in seconds after the first audio sample and taken from
    the frame's own timestamp: variable frame rates and streams that start late both occur in the wild."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            audio = container.streams.audio
            zero = float(audio[0].start_time * audio[0].time_base) if audio and audio[0].start_time else 0.0
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.time is None:
                    raise OpenVasaError(f"{path.name}: a video frame has no timestamp")
                yield frame.time - zero, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise OpenVasaError(f"{path.name}: cannot decode the video ({e.strerror})") from e


def track_clip(path: Path, config: PrepConfig, tracker: FaceTracker) -> ClipTrack:
    """Stream a clip through the tracker, noting scene cuts, landmark jumps, gaps and second faces."""
    check_every = config.second_face_check_every
    times, marks, breaks, crowded = [], [], {}, []
    previous_thumb, previous, last_found = None, None, -math.inf
    tracker.restart()
    for i, (time_s, frame) in enumerate(timed_frames(path)):
        thumb = _thumbnail(frame)
        if previous_thumb is not None and np.abs(thumb - previous_thumb).mean() > config.scene_cut_threshold:
            breaks[i] = "scene_cut"
        elif times and time_s - times[-1] > MAX_FRAME_GAP_S:
            breaks[i] = "frame_gap"
        previous_thumb = thumb
        if i in breaks or (previous is None and time_s - last_found > config.reframe_after_s):
            tracker.restart()
            previous, last_found = None, time_s
        points = tracker.track(frame)
        if points is not None and previous is not None and _jump(previous, points) > config.landmark_jump_threshold:
            # An unnoticed cut: the tracker snapped to a face elsewhere, in a framing chosen for the old one.
            breaks[i] = "landmark_jump"
            tracker.restart()
            points = tracker.track(frame)
        if points is not None:
            last_found = time_s
            if i % check_every == 0 and _second_face(tracker, frame, points, config):
                crowded.append(i)
        previous = points
        times.append(time_s)
        marks.append(np.full((lm.N_LANDMARKS, 3), np.nan, np.float32) if points is None else points)
    if not marks:
        raise OpenVasaError(f"{path.name}: the video has no frames")
    second_face = np.zeros(len(marks), bool)
    for i in crowded:
        # Up to the neighbouring checks: when the other face came and went between them is unknown.
        second_face[max(0, i - check_every + 1) : i + check_every] = True
    return ClipTrack(np.array(times), np.stack(marks), second_face, breaks)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=cv2.INTER_AREA).astype(np.float32)


def _jump(before: np.ndarray, after: np.ndarray) -> float:
    """Median move of the rigid landmarks between two frames, in eye distances."""
    rigid = list(lm.RIGID)
    moves = np.linalg.norm(after[rigid, :2] - before[rigid, :2], axis=-1)
    return float(np.median(moves) / lm.eye_distance(after))


def _second_face(tracker: FaceTracker, frame: np.ndarray, points: np.ndarray, config: PrepConfig) -> bool:
    """Whether a whole-frame detection finds another face of comparable size to the tracked one."""
    face = transform_points(points, invert_affine(tracker.to_crop))[:, :2]
    (x0, y0), (x1, y1) = face.min(0), face.max(0)
    own, others = [], []
    for box in tracker.finder.detect(frame):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        area = (box[2] - box[0]) * (box[3] - box[1])
        (own if x0 <= cx <= x1 and y0 <= cy <= y1 else others).append(area)
    # Detector boxes are tighter than the landmarks' extent: compare like with like when possible.
    main = max(own) if own else (x1 - x0) * (y1 - y0)
    return any(area > config.second_face_area * main for area in others)


def usable_runs(track: ClipTrack) -> list[tuple[int, int, str]]:
    """Maximal runs [a, b) of native frames with the face tracked, alone and unbroken, with why each ended."""
    usable = track.found & ~track.second_face
    runs, start = [], None
    for i in range(len(usable) + 1):
        if i == len(usable):
            reason = "end"
        elif i in track.breaks:
            reason = track.breaks[i]
        elif not usable[i]:
            reason = "second_face" if track.second_face[i] else "tracking_lost"
        else:
            reason = None
        if start is not None and reason is not None:
            runs.append((start, i, reason))
            start = None
        if start is None and i < len(usable) and usable[i]:
            start = i
    return runs


# --- latent, timing, smoothing --------------------------------------------------------------------------------


def neutral_frame(points: np.ndarray, basis: FaceBasis) -> int:
    """The frame whose landmarks define a clip's identity. points: (N, 478, 3).

    Lips shut and eyes open: identity_of splits a face into neutral shape + expression, and a face at rest
    leaves least to split, so dynamics come out as absolute expression (the median frame of a talking
    clip has its lips half open). Of the rest frames, the one nearest their median canonical shape, since
    a tracking glitch can read as shut lips too.
    """
    pose = fit_pose(points, basis)
    canonical = to_canonical(points.astype(np.float64), pose)
    candidates = rest_frame(measure_eyes(canonical), lm.mouth_opening(canonical))
    distance = np.abs(canonical[candidates] - np.median(canonical[candidates], 0)).mean((1, 2))
    return int(candidates[np.argmin(distance)])


@dataclass
class Span:
    """Frames [a, b) of a clip, shown at `times` (b - a,) seconds on the audio clock, and the output frames
    [first, first + count) at fps that they cover."""

    a: int
    b: int
    times: np.ndarray
    first: int
    count: int
    fps: float

    @classmethod
    def of(cls, a: int, b: int, times: np.ndarray, fps: float, n_audio: int) -> "Span":
        """times: (N,) of every frame of the clip; n_audio: output frames that the audio covers."""
        first = max(0, math.ceil(times[a] * fps - 1e-6))
        last = min(n_audio - 1, math.floor(times[b - 1] * fps + 1e-6))
        return cls(a, b, times[a:b], first, last - first + 1, fps)

    def to_output(self, values: np.ndarray, sigma: float) -> np.ndarray:
        """(b - a, D) values of the span's frames -> (count, D) float32 at the output frames, by linear
        interpolation in time, then Gaussian smoothing of sigma output frames."""
        target = (self.first + np.arange(self.count)) / self.fps
        resampled = np.stack([np.interp(target, self.times, column) for column in values.T], 1)
        return gaussian_smooth(resampled, sigma).astype(np.float32)


def high_band_power(x: np.ndarray, fps: float) -> float:
    """Power of (T,) above HIGH_BAND_HZ."""
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    return float(power[np.fft.rfftfreq(len(x), 1 / fps) >= HIGH_BAND_HZ].sum())


def count_blinks(eyes: np.ndarray, open_level: float) -> int:
    """Dips of the mean eye openness of (T, 6) eye states below BLINK_FRACTION of open_level."""
    closed = eyes[:, EYE_OPEN].mean(1) < BLINK_FRACTION * open_level
    return int(closed[0] + np.count_nonzero(closed[1:] & ~closed[:-1]))


# --- one clip ------------------------------------------------------------------------------------------------


def prep_clip(path: Path, sha256: str, out_dir: Path, config: PrepConfig, tracker: FaceTracker,
              codec: FaceLatentCodec) -> dict:  # fmt: skip
    """Prepare one clip: write its shards and its record (out_dir/clips/<stem>.json); return the record.

    A clip that cannot be used (no audio, no face, nothing long enough) gets a record saying why, so that
    it is not tried again; only unexpected errors propagate.
    """
    started = time.monotonic()
    identity_name, split = clip_identity(path, sha256)
    record = {
        "file": path.name,
        "sha256": sha256,
        "config_hash": config_hash(config, codec.basis),
        "identity": identity_name,
        "split": split,
        "status": "ok",
        "reason": None,
        "cuts": [],
        "dropped": [],
        "shards": [],
    }
    for old in (out_dir / "shards").glob(f"{path.stem}__[0-9][0-9][0-9].npz"):
        old.unlink()
    try:
        audio = load_audio(path)
        track = track_clip(path, config, tracker)
    except OpenVasaError as e:
        record.update(status="failed", reason=str(e))
        return _finish(record, out_dir, started)
    spans = _cut(track, config, n_frames_for(len(audio), config.fps), record)
    if not spans:
        record.update(status="no_segments", reason="no usable segment" if track.found.any() else "no face found")
        return _finish(record, out_dir, started)

    frames = np.concatenate([np.arange(s.a, s.b) for s in spans])
    frames = frames[:: max(1, len(frames) // NEUTRAL_SAMPLE)]
    identity = codec.identity_of(track.landmarks[frames[neutral_frame(track.landmarks[frames], codec.basis)]])
    motions = [_segment_motion(track.landmarks[s.a : s.b], s, identity, codec, config) for s in spans]
    frontends = [get_frontend(name) for name in config.audio_frontends]
    meta = {
        "clip": path.name,
        "identity": identity_name,
        "split": split,
        "source_fps": record["source_fps"],
        "fps": config.fps,
        "sha256": sha256,
        "basis": basis_fingerprint(codec.basis),
        "config_hash": record["config_hash"],
    }
    for k, (span, (motion, mouth, _)) in enumerate(zip(spans, motions, strict=True)):
        entry = {
            "file": f"shards/{path.stem}__{k:03d}.npz",
            "clip": path.name,
            "T": span.count,
            "seconds": span.count / span.fps,
            "start_s": span.first / span.fps,
            "identity": identity_name,
            "split": split,
        }
        pcm = _audio_of(audio, span)
        _save_npz(
            out_dir / entry["file"],
            pose=motion.pose,
            eyes=motion.eyes,
            dynamics=motion.dynamics,
            mouth_opening=mouth,
            reference_pose=motion.pose[rest_frame(motion.eyes, mouth)[0]],
            neutral=identity.neutral.astype(np.float32),
            audio=pcm,
            meta=np.array(json.dumps(meta | {"segment": k, "start_s": entry["start_s"]})),
            **{f"features_{f.name}": _features(f, pcm, span) for f in frontends},
        )
        record["shards"].append(entry)
    record.update(_motion_stats(motions, config.fps))
    return _finish(record, out_dir, started)


def _cut(track: ClipTrack, config: PrepConfig, n_audio: int, record: dict) -> list[Span]:
    """Spans of the usable runs long enough to keep; notes cuts and dropped runs in the record."""
    times = track.times
    frame_s = float(np.median(np.diff(times))) if len(times) > 1 else 1 / config.fps
    record.update(source_fps=round(1 / frame_s, 3), seconds=round(times[-1] + frame_s, 3))
    spans = []
    for a, b, reason in usable_runs(track):
        if reason != "end":
            record["cuts"].append({"time_s": round(times[b], 3), "reason": reason})
        span = Span.of(a, b, times, config.fps, n_audio)
        if span.count >= config.min_segment_s * config.fps - 1e-6:
            spans.append(span)
        else:
            seconds = times[b - 1] - times[a] + frame_s
            record["dropped"].append({"start_s": round(times[a], 3), "seconds": round(seconds, 3)})
    return spans


def _motion_stats(motions: list[tuple[FaceLatent, np.ndarray, np.ndarray]], fps: float) -> dict:
    """Usable seconds, blink rate and the smoothing check of a clip's segments (from _segment_motion)."""
    smooth = np.concatenate([m for _, m, _ in motions])
    raw = np.concatenate([r for _, _, r in motions])
    open_level = float(np.median(np.concatenate([m.eyes[:, EYE_OPEN].mean(1) for m, _, _ in motions])))
    minutes = len(raw) / fps / 60
    return {
        "usable_s": len(raw) / fps,
        "blinks_per_min": sum(count_blinks(m.eyes, open_level) for m, _, _ in motions) / minutes,
        "mouth_r": float(np.corrcoef(raw, smooth)[0, 1]),
        "high_band_ratio": sum(high_band_power(m, fps) for _, m, _ in motions)
        / max(sum(high_band_power(r, fps) for _, _, r in motions), 1e-20),
    }


def _segment_motion(points: np.ndarray, span: Span, identity: Identity, codec: FaceLatentCodec,
                    config: PrepConfig) -> tuple[FaceLatent, np.ndarray, np.ndarray]:  # fmt: skip
    """Latent and pose-free mouth opening of one segment on the output clock: (smoothed latent, smoothed
    mouth opening (T,), unsmoothed mouth opening (T,)) for the check that smoothing keeps lip motion."""
    latent = codec.encode(points, identity)
    mouth = lm.mouth_opening(to_canonical(points.astype(np.float64), latent.pose))[:, None]
    light = config.dynamics_smoothing_frames
    motion = FaceLatent(
        span.to_output(latent.pose, config.pose_smoothing_frames),
        span.to_output(latent.eyes, light),
        span.to_output(latent.dynamics, light),
    )
    return motion, span.to_output(mouth, light)[:, 0], span.to_output(mouth, 0.0)[:, 0]


def _audio_of(audio: np.ndarray, span: Span) -> np.ndarray:
    """int16 samples of the span's output frames, count / fps seconds (zero-padded past the end)."""
    begin = round(span.first * SAMPLE_RATE / span.fps)
    pcm = np.zeros(round(span.count * SAMPLE_RATE / span.fps), np.int16)
    piece = audio[begin : begin + len(pcm)]
    pcm[: len(piece)] = to_pcm16(np.clip(piece, -1, 1))
    return pcm


def _features(frontend: AudioFrontend, pcm: np.ndarray, span: Span) -> np.ndarray:
    """(count, D) float32 features of a shard's audio; from the stored int16 samples, so that computing a
    front-end again from a shard gives the same numbers."""
    values = np.asarray(frontend.features(from_pcm16(pcm), span.fps), np.float32)
    if values.shape[0] != span.count:
        raise ValueError(f"audio front-end {frontend.name!r} gave {len(values)} frames for {span.count}")
    return values


def _finish(record: dict, out_dir: Path, started: float) -> dict:
    record["prep_s"] = round(time.monotonic() - started, 2)
    write_atomic(out_dir / "clips" / f"{Path(record['file']).stem}.json", json.dumps(record, indent=1).encode())
    return record


# --- many clips ------------------------------------------------------------------------------------------------

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


def prep_videos(video_dir: Path, out_dir: Path, config: PrepConfig, workers: int = 1, worker_index: int = 0,
                worker_count: int = 1, progress: bool = True) -> PrepReport:  # fmt: skip
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


# --- report ----------------------------------------------------------------------------------------------------


def write_report(out_dir: Path, index: dict, wall_seconds: float) -> Path:
    """out_dir/report.md, with pose.png, expression.png and blinks.png: what the shards hold."""
    clips, shards = index["clips"], index["shards"]
    lines = ["# Motion data: prep report", ""] + _summary(index, wall_seconds)
    cut_reasons = Counter(cut["reason"] for c in clips for cut in c["cuts"])
    lines += ["", "## Cuts", "", "| reason | count |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in sorted(cut_reasons.items())] or ["| (none) | 0 |"]
    skipped = [c for c in clips if c["status"] != "ok"]
    if skipped:
        lines += ["", "Clips without shards:", ""] + [f"- {c['file']}: {c['reason']}" for c in skipped]
    if shards:
        pose, dynamics, mouth = _sample_frames(out_dir, shards)
        yaw, pitch, roll = np.degrees(pose[:, POSE_ANGLES]).T
        lines += ["", "## Pose and expression", "", "| | 5% | 50% | 95% |", "|---|---|---|---|"]
        for label, values in zip(
            ("yaw (deg)", "pitch (deg)", "roll (deg)", "mouth opening (eye distances)"),
            (yaw, pitch, roll, mouth),
            strict=True,
        ):
            lines.append(f"| {label} | " + " | ".join(f"{np.percentile(values, q):.3f}" for q in (5, 50, 95)) + " |")
        std = dynamics.std(0)
        lines += ["", f"Dynamics code std, components 1-{len(std)}: " + ", ".join(f"{v:.3f}" for v in std), ""]
        lines += ["![pose](pose.png)", "", "![expression](expression.png)", "", "![blinks](blinks.png)"]
        _plot_pose(out_dir / "pose.png", yaw, pitch, roll)
        _plot_expression(out_dir / "expression.png", std, mouth)
        _plot_blinks(out_dir / "blinks.png", [c for c in clips if c["status"] == "ok"])
    lines += ["", "## Clips", ""] + _clip_table(clips)
    path = out_dir / "report.md"
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def _summary(index: dict, wall_seconds: float) -> list[str]:
    clips, shards = index["clips"], index["shards"]
    total_min = sum(c.get("seconds", 0.0) for c in clips) / 60
    usable_min = sum(s["seconds"] for s in shards) / 60
    dropped = [d for c in clips for d in c["dropped"]]
    lines = [
        f"Config `{index['config_hash']}` (basis `{index['basis']}`): {json.dumps(index['config'])}",
        "",
        "| | |",
        "|---|---|",
        f"| clips | {len(clips)} ({sum(c['status'] == 'ok' for c in clips)} with shards) |",
        f"| total minutes | {total_min:.2f} |",
        f"| usable minutes | {usable_min:.2f} ({100 * usable_min / max(total_min, 1e-9):.0f}%) |",
        f"| segments kept | {len(shards)} |",
        f"| segments dropped (too short) | {len(dropped)} ({sum(d['seconds'] for d in dropped):.1f} s) |",
        f"| prep time, sum over clips | {sum(c.get('prep_s', 0.0) for c in clips):.0f} s |",
        f"| this run | {wall_seconds:.0f} s wall |",
    ]
    for split in ("train", "val"):
        people = sorted({s["identity"] for s in shards if s["split"] == split})
        minutes = sum(s["seconds"] for s in shards if s["split"] == split) / 60
        lines.append(f"| {split} | {len(people)} identities, {minutes:.2f} min: {', '.join(people)} |")
    return lines


def _sample_frames(out_dir: Path, shards: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose (N, 7), dynamics (N, K) and mouth opening (N,) of at most REPORT_FRAMES frames, evenly spread."""
    stride = max(1, sum(s["T"] for s in shards) // REPORT_FRAMES)
    parts = []
    for shard in shards:
        with np.load(out_dir / shard["file"]) as z:
            parts.append((z["pose"][::stride], z["dynamics"][::stride], z["mouth_opening"][::stride]))
    pose, dynamics, mouth = (np.concatenate(column) for column in zip(*parts, strict=True))
    return pose, dynamics, mouth


def _clip_table(clips: list[dict]) -> list[str]:
    lines = [
        f"Smoothing check: r = correlation of the stored (smoothed) and the unsmoothed mouth opening; band = their "
        f"power ratio above {HIGH_BAND_HZ:g} Hz.",
        "",
        "| clip | identity | split | fps | s | usable s | segments | cuts | blinks/min | r | band | prep s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in clips:
        cells = [c["file"], c["identity"], c["split"], f"{c.get('source_fps', 0):.2f}", f"{c.get('seconds', 0):.1f}"]
        if c["status"] == "ok":
            cells += [
                f"{c['usable_s']:.1f}",
                str(len(c["shards"])),
                str(len(c["cuts"])),
                f"{c['blinks_per_min']:.1f}",
                f"{c['mouth_r']:.3f}",
                f"{c['high_band_ratio']:.2f}",
            ]
        else:
            cells += ["0", "0", str(len(c["cuts"])), "", "", ""]
        lines.append("| " + " | ".join(cells + [f"{c['prep_s']:.0f}"]) + " |")
    return lines


def _plot_pose(path: Path, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> None:
    fig = Figure(figsize=(10, 3))
    for ax, values, label in zip(fig.subplots(1, 3), (yaw, pitch, roll), ("yaw", "pitch", "roll"), strict=True):
        ax.hist(values, bins=60)
        ax.set_xlabel(f"{label} (degrees)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _plot_expression(path: Path, std: np.ndarray, mouth: np.ndarray) -> None:
    fig = Figure(figsize=(10, 3))
    left, right = fig.subplots(1, 2)
    left.bar(np.arange(1, len(std) + 1), std)
    left.set_xlabel("dynamics component")
    left.set_ylabel("std")
    right.hist(mouth, bins=60)
    right.set_xlabel("mouth opening (eye distances)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _plot_blinks(path: Path, clips: list[dict]) -> None:
    fig = Figure(figsize=(6, 0.25 * len(clips) + 1))
    ax = fig.subplots()
    ax.barh([Path(c["file"]).stem for c in clips], [c["blinks_per_min"] for c in clips])
    ax.set_xlabel("blinks per minute")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
