"""Motion quality on people the models never saw: generate from each validation clip's audio and its rest
frame, compare with the real motion of the clip (in the face latent, decoded to landmarks).

    python -m openvasa.eval.motion_quality --index out/prep/index.json [--out out/motion_quality.md]
    python -m openvasa.eval.motion_quality --index out/prep_stream/index.json --checkpoint X --live  # live model

Metrics per method: eval.metrics.MOTION_METRICS (what each measures: docs/metrics.md), the same as the rendered
suite's, plus pose std / real; the real clip itself is the reference row.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openvasa.audio.features import frame_energy_features
from openvasa.audio.phonetics import lip_closures
from openvasa.data.loader import rest_index, split_shards
from openvasa.eval import metrics as m
from openvasa.face.latent import FaceBasis, FaceLatent, Identity
from openvasa.motion.baseline import generate_baseline_motion
from openvasa.motion.closures import close_lips
from openvasa.motion.generator import MotionGenerator
from openvasa.motion.settings import GenerationSettings
from openvasa.units import FPS, from_pcm16


@dataclass
class ClipMotion:
    name: str
    audio: np.ndarray  # (S,) 16 kHz float32
    latent: FaceLatent
    neutral: np.ndarray  # (478, 3)
    reference: FaceLatent  # 1 frame: the clip's rest frame


def load_validation_clips(index: Path, split: str = "val") -> list[ClipMotion]:
    clips = []
    for shard, z in split_shards(index, split):
        latent = FaceLatent(
            z["pose"].astype(np.float64), z["eyes"].astype(np.float64), z["dynamics"].astype(np.float64)
        )
        rest = rest_index(latent.pose, z["reference_pose"])
        audio = from_pcm16(z["audio"])
        clips.append(ClipMotion(shard["file"], audio, latent, z["neutral"].astype(np.float64), latent[rest : rest + 1]))
    return clips


def clip_metrics(
    latent: FaceLatent, clip: ClipMotion, basis: FaceBasis, loudness: np.ndarray, closures: np.ndarray
) -> dict[str, float]:
    """The motion metrics of a latent against the clip's real motion; loudness (T,) and closures (N,): the clip's
    audio's, computed once per clip."""
    return m.score_motion(m.MotionPair(latent, clip.latent, clip.neutral, basis, loudness, FPS, closures))


def evaluate(
    index: Path, generator: MotionGenerator | None, seeds: int = 2, settings: GenerationSettings | None = None
) -> dict[str, dict[str, float]]:
    """Mean metrics per method over validation clips (and seeds for the generative methods). The model is scored
    as it samples and with the lips shut at the audio's /p b m/ (as `generate` does for English speech)."""
    settings = settings or GenerationSettings(steps=10)
    basis = FaceBasis.load()
    methods: dict[str, list[dict[str, float]]] = {"real": [], "baseline": []}
    model = f"model ({settings.steps} steps)"
    if generator is not None:
        methods[model] = []
        methods[f"{model} + lip closures"] = []
    for clip in load_validation_clips(index):
        loudness, closures = frame_energy_features(clip.audio, FPS)[:, 0], lip_closures(clip.audio, FPS)
        methods["real"].append(clip_metrics(clip.latent, clip, basis, loudness, closures))
        identity = Identity(clip.neutral, clip.reference)
        rest_open = identity.rest_opening(basis)
        for seed in range(seeds):
            base = generate_baseline_motion(
                clip.audio, FPS, identity.reference, basis, seed=seed, rest_opening=rest_open
            )
            methods["baseline"].append(clip_metrics(base, clip, basis, loudness, closures))
            if generator is not None:
                gen = generator.generate(
                    clip.audio,
                    FPS,
                    clip.reference,
                    basis,
                    seed=seed,
                    settings=settings,
                    rest_opening=rest_open,
                )
                methods[model].append(clip_metrics(gen, clip, basis, loudness, closures))
                shut = close_lips(gen, closures, clip.neutral, basis)
                methods[f"{model} + lip closures"].append(clip_metrics(shut, clip, basis, loudness, closures))
    return {name: {k: m.mean_of_known([r[k] for r in rows]) for k in rows[0]} for name, rows in methods.items() if rows}


def markdown(results: dict[str, dict[str, float]]) -> str:
    real_pose = results["real"]["pose_std_deg"]
    rows = {method: {**r, "pose_std_ratio": r["pose_std_deg"] / real_pose} for method, r in results.items()}
    columns = [(key, metric.header, metric.fmt) for key, metric in m.MOTION_METRICS.items()]
    columns.insert(list(m.MOTION_METRICS).index("pose_std_deg") + 1, ("pose_std_ratio", "pose std / real", "{:.2f}"))
    return "\n".join(m.table(rows, columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("out/prep/index.json"))
    parser.add_argument("--checkpoint", type=Path, help="motion checkpoint (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=Path("out/motion_quality.md"))
    parser.add_argument("--live", action="store_true", help="sample as live sessions do (causal, no audio guidance)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps (default 10)")
    args = parser.parse_args()
    generator = MotionGenerator(args.checkpoint)
    settings = GenerationSettings(steps=args.steps)
    if args.live:
        from openvasa.stream.session import stream_settings

        settings = stream_settings(args.steps, generator.config.window)
    results = evaluate(args.index, generator, settings=settings)
    table = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(table)


if __name__ == "__main__":
    main()
