"""How well each audio front-end predicts mouth opening on people it has not seen, and what it costs.

    .venv/bin/python benchmarks/probe_audio.py [--videos ../shared/data/videos] [--cache out/tracked_landmarks.npz]

Targets: inner-lip opening (pose removed) from the tracked landmarks cache, resampled to 25 fps, each clip's
mean removed. Probe: per-frame features z-scored and reduced to at most 128 dims by PCA (fitted on the
training clips), stacked over +-5 frames around frame t + shift, ridge regression (strength chosen by
grouped inner cross-validation on the training identities). Scores: per-clip Pearson r, averaged over clips,
(a) trained on the training identities and tested on the validation identities of openvasa/assets/split.json,
(b) leave-one-identity-out over all identities. The shift (look-ahead, frames) with the best (b) is reported.
Streaming: Whisper on unpadded chunks with left context, scored with the ridge fitted on full-clip features.
Writes out/audio_probe.md and out/audio_probe.json.
"""

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from openvasa.audio.features import n_frames_for
from openvasa.audio.frontends import (
    FPS,
    MEL_HOP,
    SAMPLE_RATE,
    WHISPER_COMPUTE_TYPE,
    WHISPER_MODELS,
    AudioFrontend,
    WhisperFrontend,
    get_frontend,
    whisper_base_dir,
)
from openvasa.face.landmarks import mouth_opening
from openvasa.face.latent import FaceLatentCodec, to_canonical
from openvasa.io.media import load_audio, video_fps
from openvasa.tools.fit_basis import identity_of_clip, validation_identities

log = logging.getLogger("probe_audio")

CONTEXT = 5  # frames either side
SHIFTS = tuple(range(5))
MAX_PCA_DIMS = 128
ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # ridge strength relative to the mean diagonal of X^T X
INNER_FOLDS = 4
COST_SECONDS = 20.0
COST_CLIP = "mimictalk_German_20s.mp4"
COST_REPEATS = 5
# (chunk seconds, left-context seconds) of the streaming variants
STREAM_VARIANTS = ((2.0, 2.0), (2.0, 0.0), (1.0, 2.0), (0.5, 2.0), (0.2, 2.0))


@dataclass
class Clip:
    name: str
    identity: str
    validation: bool
    audio: np.ndarray  # (S,) 16 kHz
    target: np.ndarray  # (T,) mouth opening at 25 fps, clip mean removed


@dataclass
class RidgeProbe:
    """z-score -> PCA -> +-CONTEXT stack around t + shift -> linear. mean, scale: (D,); components: (D, k)."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    shift: int
    weights: np.ndarray  # ((2 * CONTEXT + 1) * k,)
    alpha: float

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """(T, D) -> (T,)."""
        return design(((feats - self.mean) / self.scale) @ self.components, self.shift) @ self.weights


def design(reduced: np.ndarray, shift: int) -> np.ndarray:
    """(T, k) -> (T, (2 * CONTEXT + 1) * k): frames t + shift - CONTEXT .. t + shift + CONTEXT, edges held."""
    n = len(reduced)
    index = np.clip(np.arange(n)[:, None] + shift + np.arange(-CONTEXT, CONTEXT + 1)[None], 0, n - 1)
    return reduced[index].reshape(n, -1)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denom) if denom > 0 else 0.0


def fit_probe(feats: list[np.ndarray], targets: list[np.ndarray], groups: list[str], shift: int) -> RidgeProbe:
    """Fit on training clips only; the ridge strength is chosen by grouped inner CV over `groups`."""
    stacked = np.concatenate(feats).astype(np.float64)
    mean = stacked.mean(0)
    std = stacked.std(0)
    scale = np.maximum(std, 1e-6 * std.max() + 1e-12)
    z = (stacked - mean) / scale
    _, eigvec = np.linalg.eigh(z.T @ z)
    components = eigvec[:, ::-1][:, : min(MAX_PCA_DIMS, z.shape[1])]
    # float32 halves the cost of the Gram matrices, which dominate the probe's run time.
    designs = [design(((f - mean) / scale) @ components, shift).astype(np.float32) for f in feats]
    ids = sorted(set(groups))
    by_group = {g: np.concatenate([d for d, c in zip(designs, groups, strict=True) if c == g]) for g in ids}
    y_group = {g: np.concatenate([y for y, c in zip(targets, groups, strict=True) if c == g]) for g in ids}
    gram = {g: (d.T @ d).astype(np.float64) for g, d in by_group.items()}
    moment = {g: d.T.astype(np.float64) @ y_group[g] for g, d in by_group.items()}
    gram_all, moment_all = sum(gram.values()), sum(moment.values())
    eye = np.eye(gram_all.shape[0])

    def solve(g: np.ndarray, m: np.ndarray, alpha: float) -> np.ndarray:
        return np.linalg.solve(g + alpha * np.trace(g) / len(g) * eye, m)

    folds = [ids[i :: min(INNER_FOLDS, len(ids))] for i in range(min(INNER_FOLDS, len(ids)))]
    scores = np.zeros(len(ALPHAS))
    for fold in folds:
        g = gram_all - sum(gram[i] for i in fold)
        m = moment_all - sum(moment[i] for i in fold)
        held = [(d, y) for d, y, c in zip(designs, targets, groups, strict=True) if c in fold]
        for j, alpha in enumerate(ALPHAS):
            w = solve(g, m, alpha)
            scores[j] += sum(pearson(d @ w, y) for d, y in held)
    alpha = ALPHAS[int(np.argmax(scores))]
    return RidgeProbe(mean, scale, components, shift, solve(gram_all, moment_all, alpha), alpha)


def frame_times(path: Path) -> np.ndarray:
    """Presentation time (s) of every video frame, from the container: some clips have dropped frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None)
        return np.array(pts, dtype=np.float64) * float(stream.time_base)


def load_clips(video_dir: Path, cache: Path) -> list[Clip]:
    """Every clip of video_dir with tracked landmarks in the cache, with 25 fps mouth-opening targets."""
    landmarks = np.load(cache)
    codec = FaceLatentCodec()
    val_ids = validation_identities()
    clips = []
    for path in sorted(video_dir.glob("*.mp4")):
        if path.name not in landmarks.files:
            log.warning("%s: no tracked landmarks in %s, skipped", path.name, cache)
            continue
        points = landmarks[path.name].astype(np.float64)
        opening = mouth_opening(to_canonical(points, codec.encode(points).pose))
        # Tracked frames are the first len(points) frames; a frame shows [pts, pts + 1 / fps).
        centres = frame_times(path)[: len(opening)] + 0.5 / video_fps(path)
        audio = load_audio(path)
        n = min(int(centres[-1] * FPS + 0.5 + 1e-6), n_frames_for(len(audio), FPS))
        target = np.interp((np.arange(n) + 0.5) / FPS, centres, opening)
        identity = identity_of_clip(video_dir.parent / "MANIFEST.tsv", path.name)
        clips.append(Clip(path.name, identity, identity in val_ids, audio, target - target.mean()))
        log.info("%s: %s, %.1f s, %d frames", path.name, identity, len(audio) / SAMPLE_RATE, n)
    return clips


def evaluate(feats: list[np.ndarray], clips: list[Clip]) -> dict:
    """Validation and leave-one-identity-out per-clip r for every shift; the best shift by LOIO."""
    targets = [c.target for c in clips]
    groups = [c.identity for c in clips]
    train = [i for i, c in enumerate(clips) if not c.validation]
    val = [i for i, c in enumerate(clips) if c.validation]

    def fit(rows: list[int], shift: int) -> RidgeProbe:
        return fit_probe([feats[i] for i in rows], [targets[i] for i in rows], [groups[i] for i in rows], shift)

    by_shift = {}
    for shift in SHIFTS:
        probe = fit(train, shift)
        r_val = {clips[i].name: pearson(probe.predict(feats[i]), targets[i]) for i in val}
        r_loio = {}
        for identity in sorted(set(groups)):
            held = [i for i in range(len(clips)) if groups[i] == identity]
            loio = fit([i for i in range(len(clips)) if groups[i] != identity], shift)
            r_loio.update({clips[i].name: pearson(loio.predict(feats[i]), targets[i]) for i in held})
        by_shift[shift] = {
            "r_val": float(np.mean(list(r_val.values()))),
            "r_loio": float(np.mean(list(r_loio.values()))),
            "alpha_val": probe.alpha,
            "clips_val": r_val,
            "clips_loio": r_loio,
        }
        log.info("  shift %d: r val %.3f, r LOIO %.3f", shift, by_shift[shift]["r_val"], by_shift[shift]["r_loio"])
    best = max(SHIFTS, key=lambda s: by_shift[s]["r_loio"])
    return {"best_shift": best, "by_shift": by_shift}


def clip_features(frontend: AudioFrontend, clips: list[Clip]) -> list[np.ndarray]:
    """25 fps features of each clip, cut to its target length."""
    return [frontend.features(c.audio, FPS)[: len(c.target)] for c in clips]


def measure_cost(frontend: AudioFrontend, audio: np.ndarray) -> tuple[float | None, float, float]:
    """(model load seconds or None without a model, warm ms per audio second on `audio`: best, median).

    The best of the repeats is the cost; the median shows how much other load on the machine inflated it.
    """
    load_s = None
    if isinstance(frontend, WhisperFrontend):
        start = time.perf_counter()
        frontend.load()
        load_s = time.perf_counter() - start
    frontend.features(audio, FPS)
    times = []
    for _ in range(COST_REPEATS):
        start = time.perf_counter()
        frontend.features(audio, FPS)
        times.append(time.perf_counter() - start)
    ms_per_s = 1000 * np.array(times) / (len(audio) / SAMPLE_RATE)
    return load_s, float(ms_per_s.min()), float(np.median(ms_per_s))


def streaming_features(
    frontend: WhisperFrontend, audio: np.ndarray, chunk_s: float, context_s: float
) -> tuple[np.ndarray, list[float]]:
    """Whisper states computed chunk by chunk, each chunk encoded unpadded after `context_s` of earlier audio.

    Only the new chunk's 50 Hz outputs are kept. Returns (n_frames_for(S, 25), dim) and seconds per chunk.
    """
    chunk = int(round(chunk_s * SAMPLE_RATE))
    context = int(round(context_s * SAMPLE_RATE))
    outputs, seconds = [], []
    for start in range(0, len(audio), chunk):
        begin = max(0, start - context)
        segment = audio[begin : start + chunk]
        if len(segment) - (start - begin) < 2 * MEL_HOP:
            break  # a last sliver too short for one 50 Hz output: the previous outputs are held
        t0 = time.perf_counter()
        mel = frontend.mel(segment)[:, : len(segment) // MEL_HOP]
        states = frontend.encode(mel[:, : mel.shape[1] // 2 * 2])
        seconds.append(time.perf_counter() - t0)
        outputs.append(states[(start - begin) // (2 * MEL_HOP) :])
    states = np.concatenate(outputs)
    n25 = n_frames_for(len(audio), FPS)
    index = np.minimum(np.arange(2 * n25), len(states) - 1).reshape(n25, 2)
    return states[index].mean(axis=1), seconds


def run_streaming(
    frontend: WhisperFrontend, clips: list[Clip], feats: list[np.ndarray], shift: int, variants: tuple
) -> list[dict]:
    """r on the validation clips of streaming features, scored by the ridge fitted on full-clip features."""
    train = [i for i, c in enumerate(clips) if not c.validation]
    probe = fit_probe(
        [feats[i] for i in train], [clips[i].target for i in train], [clips[i].identity for i in train], shift
    )
    val = [c for c in clips if c.validation]
    offline = float(
        np.mean([pearson(probe.predict(f), c.target) for f, c in zip(feats, clips, strict=True) if c.validation])
    )
    rows = []
    for chunk_s, context_s in variants:
        rs, seconds, audio_s = [], [], 0.0
        for clip in val:
            stream, chunk_seconds = streaming_features(frontend, clip.audio, chunk_s, context_s)
            rs.append(pearson(probe.predict(stream[: len(clip.target)]), clip.target))
            seconds += chunk_seconds
            audio_s += len(clip.audio) / SAMPLE_RATE
        ms_per_chunk = 1000 * float(np.median(seconds))
        rows.append(
            {
                "frontend": frontend.name,
                "compute_type": frontend.compute_type,
                "chunk_s": chunk_s,
                "context_s": context_s,
                "r_val": float(np.mean(rs)),
                "r_val_offline_same_ridge": offline,
                "ms_per_chunk": ms_per_chunk,
                "ms_per_audio_s": 1000 * float(np.sum(seconds)) / audio_s,
                "shift": shift,
                # Frame t's prediction needs features up to t + shift + CONTEXT, which arrive with the chunk
                # that holds them: worst case a whole chunk later, plus the chunk's compute.
                "latency_s": chunk_s + (shift + CONTEXT) / FPS + ms_per_chunk / 1000,
            }
        )
        log.info(
            "  stream %s chunk %.1f s + %.1f s context: r %.3f", frontend.name, chunk_s, context_s, rows[-1]["r_val"]
        )
    return rows


def frontend_variants() -> list[tuple[str, Callable[[], AudioFrontend]]]:
    """(label, factory): each registry front-end; Whisper in both int8 and float32."""
    variants: list[tuple[str, Callable[[], AudioFrontend]]] = [
        ("energy", lambda: get_frontend("energy")),
        ("logmel", lambda: get_frontend("logmel")),
    ]
    for name, (dim, model_dir) in WHISPER_MODELS.items():
        for compute_type in ("int8", "float32"):
            variants.append(
                (
                    f"{name} ({compute_type})",
                    lambda n=name, d=dim, m=model_dir, c=compute_type: WhisperFrontend(n, d, m, c),
                )
            )
    return variants


# Frame-local front-ends: audio each frame needs past its own interval, and what a stream must change.
FRAME_LOCAL = {
    "energy": (0.025, "per-clip loudness percentiles become running statistics"),
    "logmel": (0.0125, "per-clip mean/std become running statistics"),
}


def markdown(results: dict) -> str:
    clips = results["clips"].values()
    n_val = sum(c["validation"] for c in clips)
    people = len({c["identity"] for c in clips})
    val_people = len({c["identity"] for c in clips if c["validation"]})
    rows = [
        f"| front-end | dims | r (val: {n_val} clips, {val_people} people) "
        f"| r (LOIO: {len(clips)} clips, {people} people) "
        "| best shift (frames) | cost, ms per audio s (20 s clip, best of 5) | model load, s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, res in results["frontends"].items():
        best = res["by_shift"][res["best_shift"]]
        load = "-" if res["load_s"] is None else f"{res['load_s']:.2f}"
        rows.append(
            f"| {label} | {res['dim']} | {best['r_val']:.3f} | {best['r_loio']:.3f} | {res['best_shift']} "
            f"| {res['ms_per_audio_s']:.1f} | {load} |"
        )
    rows += [
        "",
        "r by look-ahead shift (val / LOIO):",
        "",
        "| front-end | " + " | ".join(f"+{s}" for s in SHIFTS) + " |",
    ]
    rows.append("|---|" + "---|" * len(SHIFTS))
    for label, res in results["frontends"].items():
        cells = [f"{res['by_shift'][s]['r_val']:.3f} / {res['by_shift'][s]['r_loio']:.3f}" for s in SHIFTS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rows += [
        "",
        "Streaming (validation clips, ridge fitted on full-clip features of the training people):",
        "",
        "| front-end | chunk s | left context s | r (val) | r (val) full clip | ms per chunk | ms per audio s "
        "| worst-case latency s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["streaming"]:
        rows.append(
            f"| {s['frontend']} ({s['compute_type']}) | {s['chunk_s']:g} | {s['context_s']:g} | {s['r_val']:.3f} "
            f"| {s['r_val_offline_same_ridge']:.3f} | {s['ms_per_chunk']:.1f} | {s['ms_per_audio_s']:.1f} "
            f"| {s['latency_s']:.2f} |"
        )
    rows += [
        "",
        "Worst-case latency: a whole chunk, plus the ridge's right context (shift + 5 frames), plus the chunk's "
        "compute. Frame-local front-ends stream frame by frame:",
        "",
    ]
    for name, (past_frame_s, change) in FRAME_LOCAL.items():
        shift = results["frontends"][name]["best_shift"]
        latency = past_frame_s + (shift + CONTEXT) / FPS
        rows.append(
            f"- {name}: latency {latency:.2f} s ({past_frame_s * 1000:g} ms of audio window + shift {shift} "
            f"+ 5 context frames); {change}."
        )
    rows.append(f"\nWhisper base first use also joins the split weights: {results['whisper_base_join_s']:.1f} s.")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--cache", type=Path, default=Path("out/tracked_landmarks.npz"))
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    clips = load_clips(args.videos, args.cache)
    cost_audio = next(c.audio for c in clips if c.name == COST_CLIP)[: int(COST_SECONDS * SAMPLE_RATE)]
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "clips": {c.name: {"identity": c.identity, "validation": c.validation, "frames": len(c.target)} for c in clips},
        "frontends": {},
        "streaming": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        whisper_base_dir(Path(tmp))
        results["whisper_base_join_s"] = time.perf_counter() - start

    # All timings first and together, so that they share the machine's state.
    frontends = {label: factory() for label, factory in frontend_variants()}
    costs = {label: measure_cost(frontend, cost_audio) for label, frontend in frontends.items()}
    for label, frontend in frontends.items():
        log.info("%s", label)
        feats = clip_features(frontend, clips)
        res = evaluate(feats, clips)
        load_s, ms_per_s, ms_per_s_median = costs[label]
        res.update(dim=frontend.dim, load_s=load_s, ms_per_audio_s=ms_per_s, ms_per_audio_s_median=ms_per_s_median)
        results["frontends"][label] = res
        if isinstance(frontend, WhisperFrontend) and frontend.compute_type == WHISPER_COMPUTE_TYPE:
            variants = STREAM_VARIANTS if frontend.name == "whisper-tiny" else STREAM_VARIANTS[:1]
            results["streaming"] += run_streaming(frontend, clips, feats, res["best_shift"], variants)

    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    (args.out / "audio_probe.md").write_text(table)
    (args.out / "audio_probe.json").write_text(json.dumps(results, indent=1))
    print(table)


if __name__ == "__main__":
    main()
