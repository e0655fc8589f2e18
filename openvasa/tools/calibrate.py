"""Blink calibration of a motion checkpoint, fitted on the training people.

The model's eye dips become blinks of a real blink's depth when they go below a threshold, and the others stay
shallow (openvasa.motion.blinks). The threshold is the one at which the blinks per minute of the model on the
training clips, floor included and counted as the metrics count them, equal those of the real clips: the rate is
fitted, the depth is a real blink's, so a retrained model that dips more or less often still blinks as people do.
It is never below half open, where the metrics count a blink, so every blink counted is drawn at full depth.
Live models are fitted with the live sessions' settings (--live), under which they sample their own dips.

    python -m openvasa.tools.calibrate --checkpoint out/motion/motion_dit.pt --index out/prep/index.json [--live]
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openvasa.eval.metrics import blink_rate
from openvasa.eval.motion_quality import load_validation_clips
from openvasa.face.latent import EYE_OPEN, FaceBasis, Identity
from openvasa.motion.blinks import BLINK_FRACTION, BlinkCalibration, Blinks
from openvasa.motion.checkpoint import MotionCheckpoint
from openvasa.motion.generator import MotionGenerator, MotionStream
from openvasa.motion.settings import GenerationSettings
from openvasa.units import FPS

# Shares of the open level tried. None below the metrics' blink line: a dip that counts as a blink (below half open)
# must look like one, or the renderer and the viewer lose it (re-detected, 9 of the latent's 24 a minute were seen).
THRESHOLDS = np.round(np.arange(BLINK_FRACTION, 0.96, 0.01), 2)


@dataclass
class EyeSample:
    """One generation's eye openness before its blinks are shaped, and what shaping them needs."""

    openness: np.ndarray  # (T, 2)
    open_level: np.ndarray  # (2,)
    seed: int


def blinks_per_minute(openness: list[np.ndarray]) -> float:
    """Blinks per minute over all sequences together, each counted as eval.metrics.blink_rate counts them."""
    eyes = [np.zeros((len(o), EYE_OPEN.stop)) for o in openness]
    for e, o in zip(eyes, openness, strict=True):
        e[:, EYE_OPEN] = o
    frames = sum(len(o) for o in openness)
    return sum(blink_rate(e, FPS) * len(e) for e in eyes) / frames


def shaped_rate(samples: list[EyeSample], calibration: BlinkCalibration | None) -> float:
    """Blinks per minute of the samples once their blinks are shaped as generation shapes them."""
    return blinks_per_minute([Blinks(FPS, s.seed, calibration).apply(s.openness, s.open_level) for s in samples])


def fit(samples: list[EyeSample], real_rate: float) -> BlinkCalibration:
    """The threshold whose blinks per minute come closest to the real rate (the lowest of equals: fewer dips
    deepened). A model that blinks too often on its own gets the lowest: every blink it counts at full depth."""
    rates = [shaped_rate(samples, BlinkCalibration(float(t), real_rate, 0.0)) for t in THRESHOLDS]
    best = int(np.argmin(np.abs(np.array(rates) - real_rate)))
    return BlinkCalibration(float(THRESHOLDS[best]), float(real_rate), float(rates[best]))


def eye_samples(
    generator: MotionGenerator, index: Path, settings: GenerationSettings, seeds: int = 2
) -> tuple[list[EyeSample], float]:
    """The model's eye openness on the training clips (each from its rest frame, `seeds` seeds) and the real
    clips' blinks per minute."""
    basis = FaceBasis.load()
    samples, real = [], []
    for clip in load_validation_clips(index, split="train"):
        real.append(clip.latent.eyes[:, EYE_OPEN])
        opening = Identity(clip.neutral, clip.reference).rest_opening(basis)
        features = generator.audio_features(clip.audio)
        for seed in range(seeds):
            stream = MotionStream(generator, clip.reference, basis, seed=seed, settings=settings, rest_opening=opening)
            samples.append(EyeSample(stream.open_eyes(stream.sample_all(features)), stream.open_level, seed))
    return samples, blinks_per_minute(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--index", type=Path, default=Path("out/prep/index.json"))
    parser.add_argument("--live", action="store_true", help="sample as live sessions do (the streaming models)")
    args = parser.parse_args()
    settings = GenerationSettings()
    if args.live:
        from openvasa.stream.session import stream_settings

        settings = stream_settings()
    samples, real_rate = eye_samples(MotionGenerator(args.checkpoint), args.index, settings)
    calibration = fit(samples, real_rate)
    saved = MotionCheckpoint.load(args.checkpoint)
    saved.blink_calibration = calibration.to_dict()
    saved.save(args.checkpoint)
    print(
        f"training clips: real {real_rate:.1f} blinks/min; model {shaped_rate(samples, None):.1f} uncalibrated, "
        f"{calibration.model_rate:.1f} with dips below {calibration.threshold:.2f} of open as blinks"
    )


if __name__ == "__main__":
    main()
