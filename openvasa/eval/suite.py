"""The evaluation suite: generate from each real clip's first frame and its audio with every method, re-detect
landmarks in the rendered frames (so the renderer is judged with the motion), and compare with the real clip.

    openvasa eval --videos ../shared/data/videos --out out/eval

Writes results.json, results.md and PNG plots to --out. Metrics are documented in docs/metrics.md.
"""

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from openvasa.audio.frontends import get_frontend
from openvasa.audio.phonetics import lip_closures
from openvasa.data.clips import trained_identities
from openvasa.data.config import PrepConfig
from openvasa.data.loader import split_shards
from openvasa.data.prep import prep_videos
from openvasa.data.tracking import timed_frames
from openvasa.errors import OpenVasaError
from openvasa.eval import metrics as m
from openvasa.eval.sync import Judge, lip_features, load_judge, sync_scores
from openvasa.face.detect import FRAME_SIZE, FaceAnalyzer
from openvasa.face.latent import FaceLatent, FaceLatentCodec
from openvasa.face.track import fill_gaps
from openvasa.io.media import write_video
from openvasa.motion.baseline import generate_baseline_motion
from openvasa.motion.closures import close_lips
from openvasa.motion.generator import load_generator
from openvasa.motion.settings import GenerationSettings
from openvasa.pipeline import Portrait, prepare_portrait, render_latents
from openvasa.units import FPS, SAMPLE_RATE, from_pcm16

log = logging.getLogger(__name__)

REAL, STILL, BASELINE = "real", "still", "baseline"
# Which clips to evaluate. unseen: of people the shipped models were not trained on (the validation people, and
# anyone in someone else's clips); val: of the validation people only (the tables in README); all: every clip.
SPLITS = ("unseen", "val", "all")
SYNC_MAX_OFFSET = 15  # frames (0.6 s) each way, as SyncNet's evaluation


@dataclass
class EvalConfig:
    videos: Path
    out: Path
    prep: Path | None = None  # prep output (resumable); default out/prep
    split: str = "unseen"  # one of SPLITS
    steps: tuple[int, ...] = (10, 50)  # the learned model at each number of sampling steps
    seed: int = 0
    max_clips: int | None = None
    max_seconds: float | None = None  # per clip
    drift_seconds: float = 120.0  # length of the long generation for the drift check; 0 skips it
    identity_every: int = 25  # frames between face-embedding samples
    videos_out: bool = True  # write each clip's model video (also times encoding)


@dataclass
class Clip:
    name: str
    video: Path
    start_s: float
    audio: np.ndarray  # (S,) 16 kHz
    frames: int


@dataclass
class Measured:
    """One method on one clip, as re-detected in its frames."""

    latent: FaceLatent
    landmarks: np.ndarray  # (T, 478, 3)
    lost: float  # share of frames where the face was not found
    flicker: float
    identity: float  # mean face-embedding distance to the portrait (nan without dlib)
    seconds: dict[str, float] = field(default_factory=dict)


def model_name(steps: int) -> str:
    return f"model ({steps} steps)"


def eval_clips(config: EvalConfig) -> list[Clip]:
    """Prepare (or reuse) the clips, pick those of the split and cut them to config.max_clips and max_seconds."""
    return [_cut(clip, config.max_seconds) for clip in _whole_clips(config)[: config.max_clips]]


def _cut(clip: Clip, max_seconds: float | None) -> Clip:
    frames = clip.frames if max_seconds is None else min(clip.frames, int(max_seconds * FPS))
    return Clip(clip.name, clip.video, clip.start_s, clip.audio[: int(frames / FPS * SAMPLE_RATE)], frames)


def _whole_clips(config: EvalConfig) -> list[Clip]:
    """Every clip of the split, whole: data prep runs (or is reused) once per evaluation."""
    prep_dir = config.prep or config.out / "prep"
    report = prep_videos(config.videos, prep_dir, PrepConfig(audio_frontends=("energy",)), progress=False)
    clips = []
    if config.split not in SPLITS:
        raise OpenVasaError(f"unknown split {config.split!r}; choose from {', '.join(SPLITS)}")
    seen = trained_identities() if config.split == "unseen" else set()
    for shard, z in split_shards(report.index_path, "val" if config.split == "val" else None):
        if shard["identity"] in seen:
            continue
        audio = from_pcm16(z["audio"])[: int(shard["T"] / FPS * SAMPLE_RATE)]
        clips.append(Clip(Path(shard["file"]).stem, config.videos / shard["clip"], shard["start_s"], audio, shard["T"]))
    if not clips:
        raise OpenVasaError(f"no {config.split} clips in {config.videos}")
    return clips


def frames_at(path: Path, times: np.ndarray) -> Iterator[np.ndarray]:
    """The video frame nearest each of the increasing `times` (seconds on the audio's clock)."""
    i, previous = 0, None
    for t, frame in timed_frames(path):
        while i < len(times) and previous is not None and abs(previous[0] - times[i]) <= abs(t - times[i]):
            yield previous[1]
            i += 1
        if i >= len(times):
            return
        previous = (t, frame)
    while previous is not None and i < len(times):
        yield previous[1]
        i += 1


def measure(frames: Iterable[np.ndarray], portrait: Portrait, codec: FaceLatentCodec, identity_every: int) -> Measured:
    """Re-detect landmarks in 512 framed frames and measure background flicker and identity as they pass."""
    flicker = m.FlickerMeter(m.background_mask(portrait.crop.landmarks[None], FRAME_SIZE, margin=80))
    marks, found, distances = [], [], []
    reference = _embedding(portrait.crop.image)
    started = time.perf_counter()
    with FaceAnalyzer(static=False) as tracker:
        for i, frame in enumerate(frames):
            points = tracker.landmarks(frame)
            found.append(points is not None)
            marks.append(points if points is not None else np.full((478, 3), np.nan, np.float32))
            flicker.add(frame)
            if reference is not None and i % identity_every == 0:
                # dlib's detector misses some faces MediaPipe tracks (a tilted head on a dark background): such
                # frames say nothing of identity, and counting them as infinitely far made a clip's mean inf.
                if (embedding := _embedding(frame)) is not None:
                    distances.append(np.linalg.norm(embedding - reference))
    valid = np.array(found)
    if not valid.any():
        raise OpenVasaError("the face was not found in any frame")
    landmarks = fill_gaps(np.stack(marks), valid)
    return Measured(
        latent=codec.encode(landmarks, portrait.identity),
        landmarks=landmarks,
        lost=float(1 - valid.mean()),
        flicker=flicker.value,
        identity=float(np.mean(distances)) if distances else float("nan"),
        seconds={"measure": time.perf_counter() - started},
    )


def _embedding(image: np.ndarray) -> np.ndarray | None:
    try:
        from openvasa.eval.identity import face_embedding
    except ImportError:  # dlib is an optional (dev) dependency
        return None
    try:
        return face_embedding(image)
    except ImportError:
        return None


def generated_latents(
    portrait: Portrait, clip: Clip, codec: FaceLatentCodec, config: EvalConfig, closures: np.ndarray
) -> Iterator[tuple[str, FaceLatent, float]]:
    """(method, motion latent, seconds to make it) for every generated method; the model's as `generate` makes
    it, with the lips shut at the closures (frames of the audio's /p b m/)."""
    reference = portrait.identity.reference
    yield (
        STILL,
        FaceLatent(*(np.repeat(a, clip.frames, 0) for a in (reference.pose, reference.eyes, reference.dynamics))),
        0.0,
    )
    started = time.perf_counter()
    rest_opening = portrait.identity.rest_opening(codec.basis)
    latent = generate_baseline_motion(
        clip.audio, FPS, reference, codec.basis, seed=config.seed, rest_opening=rest_opening
    )
    yield BASELINE, latent[: clip.frames], time.perf_counter() - started
    generator = load_generator()
    for steps in config.steps:
        started = time.perf_counter()
        settings = GenerationSettings(steps=steps)
        latent = generator.generate(
            clip.audio, FPS, reference, codec.basis, seed=config.seed, settings=settings, rest_opening=rest_opening
        )
        latent = close_lips(latent, closures, portrait.identity.neutral, codec.basis)
        yield model_name(steps), latent[: clip.frames], time.perf_counter() - started


def clip_scores(
    measured: Measured,
    real: Measured,
    neutral: np.ndarray,
    codec: FaceLatentCodec,
    judge: Judge,
    audio_features: np.ndarray,
    loudness: np.ndarray,
    closures: np.ndarray,
) -> dict[str, float]:
    """The motion metrics (eval.metrics.MOTION_METRICS) on the re-detected motion, lip sync, and what only
    rendered frames show."""
    pair = m.MotionPair(measured.latent, real.latent, neutral, codec.basis, loudness, FPS, closures)
    return {
        **sync_scores(judge, lip_features(measured.latent, codec.basis), audio_features, SYNC_MAX_OFFSET),
        **m.score_motion(pair),
        "jitter": m.jitter(measured.landmarks),
        "flicker": measured.flicker,
        "identity_distance": measured.identity,
        "face_lost": measured.lost,
    }


def evaluate(config: EvalConfig) -> dict:
    """Run the comparison and write results.json, results.md and the plots; returns the results."""
    config.out.mkdir(parents=True, exist_ok=True)
    codec = FaceLatentCodec()
    judge = load_judge()
    judge_frontend = get_frontend(judge.config.audio)
    loudness_frontend = get_frontend("energy")
    per_clip: dict[str, dict[str, dict[str, float]]] = {}
    features: dict[str, list[np.ndarray]] = {}
    mouths: dict[str, dict[str, list[float]]] = {}
    timer = Timings()
    whole = _whole_clips(config)
    clips = [_cut(clip, config.max_seconds) for clip in whole[: config.max_clips]]
    for clip in clips:
        log.info("clip %s (%d frames)", clip.name, clip.frames)
        times = clip.start_s + np.arange(clip.frames) / FPS
        with timer.stage("face analysis", REAL, frames=0):
            portrait = prepare_portrait(next(frames_at(clip.video, times[:1])), codec=codec)
        neutral = portrait.identity.neutral
        # The real clip in the portrait's 512 framing, measured exactly as the renders are.
        real_frames = (_to_framing(f, portrait) for f in frames_at(clip.video, times))
        results = {REAL: measure(real_frames, portrait, codec, config.identity_every)}
        closures = lip_closures(clip.audio, FPS)
        for method, latent, motion_seconds in generated_latents(portrait, clip, codec, config, closures):
            timer.add("motion", method, motion_seconds, len(latent))
            with timer.stage("render", method, len(latent)):
                frames = list(render_latents(portrait, latent, codec))
            if config.videos_out and method == model_name(config.steps[0]):
                with timer.stage("encode", method, len(frames)):
                    write_video(
                        config.out / "videos" / f"{clip.name}.mp4", frames, FPS, clip.audio, n_frames=len(frames)
                    )
            results[method] = measure(frames, portrait, codec, config.identity_every)
        audio_features = judge_frontend.features(clip.audio, FPS)
        loudness = loudness_frontend.features(clip.audio, FPS)[:, 0]
        per_clip[clip.name] = {
            method: clip_scores(measured, results[REAL], neutral, codec, judge, audio_features, loudness, closures)
            for method, measured in results.items()
        }
        for method, measured in results.items():
            features.setdefault(method, []).append(m.motion_features(measured.latent, codec.basis))
            mouths.setdefault(clip.name, {})[method] = m.mouth_opening(measured.latent, neutral, codec.basis).tolist()
    methods = list(next(iter(per_clip.values())))
    summary = {
        method: {
            key: m.mean_of_known([c[method][key] for c in per_clip.values()])
            for key in per_clip[next(iter(per_clip))][method]
        }
        for method in methods
    }
    real_features = np.concatenate(features[REAL])
    for method in methods:
        summary[method]["motion_fd"] = m.frechet_distance(np.concatenate(features[method]), real_features)
        summary[method]["pose_variation_ratio"] = summary[method]["pose_variation"] / summary[REAL]["pose_variation"]
    frames_total = sum(c.frames for c in clips)
    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "clips": per_clip,
        "methods": summary,
        "speed": timer.table(),
        "drift": drift_check(whole, config, codec) if config.drift_seconds > 0 else {},
        "frames": frames_total,
        "audio_seconds": frames_total / FPS,
    }
    (config.out / "results.json").write_text(json.dumps(results, indent=1))
    (config.out / "results.md").write_text(markdown(results))
    plot(results, mouths, config.out)
    return results


def _to_framing(frame: np.ndarray, portrait: Portrait) -> np.ndarray:
    import cv2

    return cv2.warpAffine(
        frame, portrait.crop.to_crop, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )


class Timings:
    """Seconds and frames per (stage, method); the table gives milliseconds per frame and, per method, the
    frames per second of motion + render + encode (the offline generate path; encoding is timed on the
    first model's videos and counted for every method)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}
        self.frames: dict[tuple[str, str], int] = {}
        self.calls: dict[tuple[str, str], int] = {}

    def add(self, stage: str, method: str, seconds: float, frames: int) -> None:
        key = (stage, method)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.frames[key] = self.frames.get(key, 0) + frames
        self.calls[key] = self.calls.get(key, 0) + 1

    @contextmanager
    def stage(self, stage: str, method: str, frames: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.add(stage, method, time.perf_counter() - started, frames)

    def per_frame(self, stage: str, method: str) -> float:
        return 1000 * self.seconds[stage, method] / max(self.frames[stage, method], 1)

    def table(self) -> dict:
        encode = [self.per_frame(stage, method) for stage, method in self.seconds if stage == "encode"]
        encode_ms = float(np.mean(encode)) if encode else 0.0
        rows = {}
        for method in dict.fromkeys(method for stage, method in self.seconds if stage == "render"):
            motion, render = self.per_frame("motion", method), self.per_frame("render", method)
            rows[method] = {
                "motion ms/frame": motion,
                "render ms/frame": render,
                "fps (motion + render + encode)": 1000 / (motion + render + encode_ms),
            }
        face = ("face analysis", REAL)
        return {
            "methods": rows,
            "encode ms/frame": encode_ms,
            "face analysis ms/portrait": 1000 * self.seconds.get(face, 0.0) / max(self.calls.get(face, 0), 1),
        }


def drift_check(clips: list[Clip], config: EvalConfig, codec: FaceLatentCodec) -> dict:
    """A long generation (the clips' whole audio repeated to `drift_seconds`) from the first clip's portrait,
    rendered and re-detected: the first and last 20 s must look alike."""
    audio = np.concatenate([c.audio for c in clips])
    audio = np.tile(audio, int(np.ceil(config.drift_seconds * SAMPLE_RATE / len(audio))))[
        : int(config.drift_seconds * SAMPLE_RATE)
    ]
    first = next(frames_at(clips[0].video, np.array([clips[0].start_s])))
    portrait = prepare_portrait(first, codec=codec)
    identity = portrait.identity
    latent = load_generator().generate(
        audio, FPS, identity.reference, codec.basis, seed=config.seed, rest_opening=identity.rest_opening(codec.basis)
    )
    measured = measure(render_latents(portrait, latent, codec), portrait, codec, identity_every=10**9)
    return {"seconds": config.drift_seconds, **m.drift(measured.latent, portrait.identity.neutral, codec.basis, FPS)}


COLUMNS = [  # key, header, format
    ("sync_confidence", "sync conf", "{:.3f}"),
    ("sync_offset", "sync offset", "{:+.1f}"),
    *((key, metric.header, metric.fmt) for key, metric in m.MOTION_METRICS.items()),
    ("pose_variation_ratio", "ΔP / real", "{:.2f}"),
    ("motion_fd", "motion FD", "{:.1f}"),
    ("jitter", "jitter (px)", "{:.3f}"),
    ("flicker", "flicker", "{:.3f}"),
    ("identity_distance", "identity dist", "{:.3f}"),
]


def markdown(results: dict) -> str:
    lines = m.table(results["methods"], COLUMNS)
    lines += [
        "",
        f"{len(results['clips'])} clips, {results['audio_seconds']:.1f} s of audio, {results['frames']} frames; "
        f"blinks/min over the {_blink_clips(results)} whose real video shows a blink.",
        "",
    ]
    speed = results["speed"]
    header = list(next(iter(speed["methods"].values())))
    lines += ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for method, row in speed["methods"].items():
        lines.append(f"| {method} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    lines += [
        "",
        f"Encoding {speed['encode ms/frame']:.1f} ms/frame; face analysis {speed['face analysis ms/portrait']:.0f} ms per portrait.",
    ]
    if results["drift"]:
        lines += ["", "Drift over a long generation (last 20 s vs first 20 s):", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in results["drift"].items()]
    return "\n".join(lines) + "\n"


def _blink_clips(results: dict) -> int:
    return sum(not np.isnan(c[REAL]["blinks_per_min"]) for c in results["clips"].values())


def plot(results: dict, mouths: dict[str, dict[str, list[float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    keys = [c for c in COLUMNS if c[0] != "sync_offset"]
    fig, axes = plt.subplots(3, 4, figsize=(16, 10))
    for ax, (key, header, _) in zip(axes.flat, keys, strict=False):
        values = [results["methods"][method][key] for method in methods]
        ax.bar(range(len(methods)), values, color=[f"C{i}" for i in range(len(methods))])
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(header)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=80)
    plt.close(fig)
    names = list(mouths)[:3]
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 3 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for method in (REAL, BASELINE, *[k for k in mouths[name] if k.startswith("model")][:1]):
            series = np.array(mouths[name][method])
            ax.plot(np.arange(len(series)) / FPS, series, label=method, lw=1.5 if method == REAL else 1)
        ax.set_title(name)
        ax.set_ylabel("mouth opening")
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out / "mouth.png", dpi=80)
    plt.close(fig)
