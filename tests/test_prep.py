"""Motion data prep: audio and motion share one clock after resampling, bad clips are cut or skipped with a
reason, runs resume, and the loader reads every shard's windows exactly once per epoch across workers."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from openvasa.data.clips import SPLIT_FILE, file_sha256
from openvasa.data.config import PrepConfig
from openvasa.data.loader import MotionWindows, WindowConfig
from openvasa.data.prep import prep_videos
from openvasa.data.shards import Span
from openvasa.io.media import write_video
from openvasa.motion.baseline import MouthModel
from openvasa.units import SAMPLE_RATE

from .conftest import shared_file

FPS_IN = 30
OPEN_AT = 48  # input frame where the mouth opens and the tone starts: 1.6 s, output frame 40 at 25 fps
N_FRAMES = 90
QUIET = PrepConfig()


def tone_from(n_frames: int, onset_s: float | None) -> np.ndarray:
    """Silence, then a 220 Hz tone with a little noise from onset_s (None: no tone)."""
    t = np.arange(round(n_frames / FPS_IN * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * np.random.default_rng(0).normal(size=len(t))
    return (audio * (t >= (onset_s or 0.0))).astype(np.float32)


@pytest.fixture(scope="module")
def talking_frames(astronaut_portrait, codec) -> list[np.ndarray]:
    """The astronaut with the mouth shut until frame OPEN_AT, then open by 0.15 eye distances."""
    reference = astronaut_portrait.identity.reference
    open_dir = MouthModel.load().open_dir
    frames = []
    for i in range(N_FRAMES):
        latent = reference.copy()
        latent.dynamics = latent.dynamics + (0.15 * open_dir if i >= OPEN_AT else 0.0)
        frames.append(astronaut_portrait.renderer.render(codec.decode(latent, astronaut_portrait.identity)[0]))
    return frames


@pytest.fixture(scope="module")
def aligned_run(talking_frames, tmp_path_factory) -> tuple[Path, Path]:
    videos = tmp_path_factory.mktemp("videos")
    write_video(videos / "talk.mp4", talking_frames, FPS_IN, tone_from(N_FRAMES, OPEN_AT / FPS_IN))
    out = tmp_path_factory.mktemp("prep")
    prep_videos(videos, out, QUIET, progress=False)
    return videos, out


def test_mouth_step_and_audio_onset_land_on_the_same_output_frame(aligned_run):
    _, out = aligned_run
    index = json.loads((out / "index.json").read_text())
    assert len(index["shards"]) == 1 and index["shards"][0]["start_s"] == 0.0
    z = np.load(out / index["shards"][0]["file"])
    expected = round(OPEN_AT / FPS_IN * QUIET.fps)  # 40
    mouth = z["mouth_opening"]
    mouth_step = int(np.argmax(mouth > (mouth[:20].mean() + mouth[-20:].mean()) / 2))
    audio_onset = int(np.argmax(np.abs(z["audio"]) > 0.1 * 32767)) / SAMPLE_RATE * QUIET.fps
    loudness_onset = int(np.argmax(z["features_energy"][:, 0] > 0.5))
    print(f"output frame of: mouth step {mouth_step}, audio onset {audio_onset:.2f}, loudness {loudness_onset}")
    assert abs(mouth_step - expected) <= 1
    assert abs(audio_onset - expected) <= 1
    assert abs(loudness_onset - expected) <= 1
    T = len(z["pose"])
    assert z["audio"].dtype == np.int16 and len(z["audio"]) == T * SAMPLE_RATE / QUIET.fps
    assert z["eyes"].shape == (T, 6) and z["dynamics"].shape[0] == T and z["neutral"].shape == (478, 3)
    meta = json.loads(str(z["meta"]))
    assert meta["source_fps"] == FPS_IN and meta["clip"] == "talk.mp4" and meta["split"] == "train"


def test_second_run_skips_done_clips_and_leaves_the_index(aligned_run):
    videos, out = aligned_run
    index = (out / "index.json").read_bytes()
    shard = next((out / "shards").iterdir())
    written = shard.stat().st_mtime_ns
    report = prep_videos(videos, out, QUIET, progress=False)
    assert (report.processed, report.resumed) == (0, 1)
    assert (out / "index.json").read_bytes() == index
    assert shard.stat().st_mtime_ns == written


@pytest.fixture(scope="module")
def failure_run(talking_frames, tmp_path_factory) -> dict:
    """One run over four bad clips: no face, a scene cut, a second face, too short."""
    videos = tmp_path_factory.mktemp("bad_videos")
    noise = np.random.default_rng(1).integers(0, 255, (60, 96, 96, 3), dtype=np.uint8)
    write_video(videos / "noface.mp4", list(noise), FPS_IN, tone_from(60, None))
    # Another shot: the same person mirrored and dimmed, as after an edit.
    second_shot = [(f[:, ::-1] * 0.6).astype(np.uint8) for f in talking_frames[:66]]
    write_video(videos / "cut.mp4", talking_frames[:66] + second_shot, FPS_IN, tone_from(132, None))
    write_video(videos / "short.mp4", talking_frames[:45], FPS_IN, tone_from(45, None))
    # Someone else fades in beside the speaker over frames 90-105; whole-frame checks run every 25 frames.
    other = cv2.resize(talking_frames[0][:, ::-1], (400, 400))
    crowded = []
    for i in range(150):
        frame = np.full((512, 1024, 3), 90, np.uint8)
        frame[:, :512] = talking_frames[i % N_FRAMES]
        alpha = np.clip((i - 90) / 15, 0, 1)
        frame[56:456, 568:968] = alpha * other + (1 - alpha) * frame[56:456, 568:968]
        crowded.append(frame)
    write_video(videos / "two.mp4", crowded, FPS_IN, tone_from(150, None))
    out = tmp_path_factory.mktemp("bad_prep")
    report = prep_videos(videos, out, QUIET, progress=False)
    records = {p.stem: json.loads(p.read_text()) for p in (out / "clips").glob("*.json")}
    return {"report": report, "records": records}


def test_clip_without_a_face_is_skipped_with_a_reason(failure_run):
    assert failure_run["report"].failed["noface.mp4"] == "no face found"
    assert failure_run["records"]["noface"]["shards"] == []


def test_scene_cut_gives_two_segments(failure_run):
    record = failure_run["records"]["cut"]
    assert [c["reason"] for c in record["cuts"]] == ["scene_cut"]
    assert abs(record["cuts"][0]["time_s"] - 66 / FPS_IN) < 1e-3
    assert [s["T"] for s in record["shards"]] == [55, 55]


def test_second_face_ends_the_segment_at_the_last_check_with_one_face(failure_run):
    record = failure_run["records"]["two"]
    assert [c["reason"] for c in record["cuts"]] == ["second_face"]
    assert abs(record["cuts"][0]["time_s"] - 76 / FPS_IN) < 1e-3  # detected at frame 100, after a clean 75
    assert len(record["shards"]) == 1


def test_too_short_clip_is_dropped(failure_run):
    record = failure_run["records"]["short"]
    assert record["status"] == "no_segments" and record["shards"] == []
    assert record["dropped"][0]["seconds"] == 1.5


def test_split_file_keeps_people_apart():
    split = json.loads(SPLIT_FILE.read_text())
    by_identity: dict[str, set[str]] = {}
    for clip in split["clips"]:
        by_identity.setdefault(clip["identity"], set()).add(clip["split"])
    assert all(len(splits) == 1 for splits in by_identity.values())
    assert {i for i, s in by_identity.items() if s == {"val"}} <= set(split["validation_identities"])
    assert all(by_identity.get(i, {"val"}) == {"val"} for i in split["validation_identities"])


def test_split_file_matches_the_shared_clips():
    for clip in json.loads(SPLIT_FILE.read_text())["clips"]:
        assert file_sha256(shared_file(f"videos/{clip['file']}")) == clip["sha256"]


def test_two_workers_on_real_clips_and_loader_reads_each_window_once(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("vexpress_RD_Radio10_0_clip_0.mp4", "real3dportrait_May_5s.mp4"):
        (videos / name).symlink_to(shared_file(f"videos/{name}"))
    report = prep_videos(videos, tmp_path / "prep", QUIET, workers=2, progress=False)
    assert (report.processed, report.failed) == (2, {})
    index = json.loads((tmp_path / "prep" / "index.json").read_text())
    assert {(s["identity"], s["split"]) for s in index["shards"]} == {("RD_Radio10", "train"), ("TheresaMay", "val")}
    assert all((tmp_path / "prep" / s["file"]).exists() for s in index["shards"])

    config = WindowConfig(window=25, context=10, split=None)
    dataset = MotionWindows(tmp_path / "prep" / "index.json", config)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    seen = [(int(k), int(s)) for b in batches for k, s in zip(b["shard"], b["start"], strict=True)]
    assert len(seen) == len(set(seen)) == dataset.windows_per_epoch()
    per_shard = {k: sum(1 for shard, _ in seen if shard == k) for k in range(len(dataset.shards))}
    assert per_shard == {k: s["T"] // config.window for k, s in enumerate(dataset.shards)}
    assert batches[0]["motion"].shape[1:] == (35, 53) and batches[0]["audio"].shape[1:] == (35, 4)


def test_loader_mirror_and_zoom_augmentations(aligned_run):
    _, out = aligned_run
    windows = {}
    for name, extra in (("plain", {}), ("mirror", {"mirror_prob": 1.0}), ("zoom", {"scale_jitter": 0.2})):
        windows[name] = list(MotionWindows(out / "index.json", WindowConfig(window=25, context=10, **extra)))
    plain, mirror, zoom = (windows[k][1] for k in ("plain", "mirror", "zoom"))
    assert torch.equal(plain["start"], mirror["start"]) and plain["valid"].all()
    assert torch.allclose(mirror["motion"][:, [0, 2]], -plain["motion"][:, [0, 2]], atol=1e-6)  # yaw, roll
    assert torch.allclose(mirror["motion"][:, 7:9], plain["motion"][:, [8, 7]])  # eye openness swaps
    log_zoom = zoom["motion"][:, 6] - plain["motion"][:, 6]
    assert 0 < abs(float(log_zoom[0])) <= 0.2 and torch.allclose(log_zoom, log_zoom[0].expand(35), atol=1e-5)
    for w in windows["plain"]:  # context before the shard's first frame is padding
        assert int(w["valid"].sum()) == 35 - max(0, 10 - int(w["start"]))


def test_span_follows_frame_timestamps():
    """Variable frame rate (a dropped frame) and a video that starts 33 ms after its audio."""
    times = 0.033 + np.delete(np.arange(40), [7]) / 30
    span = Span.of(0, len(times), times, 25.0, n_audio=100)
    assert (span.first, span.count) == (1, 33)  # output frames 1..33 lie within 0.033..1.333 s
    resampled = span.to_output(times[:, None], sigma=0.0)[:, 0]
    assert np.allclose(resampled, np.arange(1, 34) / 25, atol=1e-6)
