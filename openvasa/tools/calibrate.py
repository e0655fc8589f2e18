"""Blink, head-range and mouth calibration of a motion checkpoint, fitted on the training people.

Blinks: the model's eye dips become blinks of a real blink's depth when they go below a threshold, and the others
stay shallow (openvasa.motion.blinks). The threshold is the one at which the blinks per minute of the model on the
training clips, floor included and counted as the metrics count them, equal those of the real clips: the rate is
fitted, the depth is a real blink's, so a retrained model that dips more or less often still blinks as people do.
It is never below half open, where the metrics count a blink, so every blink counted is drawn at full depth.

Head range: the level the head's wander is brought up to (openvasa.motion.head) at which the model's yaw and
pitch spread on the training clips equals the real clips'. A model's head range is learned in-sample: the shipped
model's heads spread 0.84 of real on the people it was trained on, 0.57 on the training-split people added after
it was trained and 0.47 on the validation people. So with --trained-on (the prep index the model was trained on)
the level is fitted on the training-split people that index's training clips do not hold (its blinks show no
such gap, 1.09 and 1.17 of the real rate on its own and on the validation people, so their threshold is fitted on
every training clip: more blinks to count). The spread that counts is the one the renderer shows: a warped
photograph shows 0.84 of a head turn, re-detected on the shared training clips' first frames (`shown_rotation`).
The level stays below MAX_GAIN times the model's own, where a typical voice's gain stops.

Mouth: the ridge regression of the mouth's opening and width on the audio features that steers
the generated mouth (openvasa.motion.mouth_regression), fitted on every training clip, each clip's mouth at its own
audio-video offset (found once for both the offline and the live regression); how far it steers the opening
and the width (`blend`) are the shares that give each its highest correlation with the real one on the same
held-out people, each scored with a regression fitted without them. Live models get a regression that ends at the frame (a session has no later audio).

Live models are fitted with the live sessions' settings (--live), under which they sample their own dips.

    python -m openvasa.tools.calibrate --checkpoint out/motion/motion_dit.pt --index out/prep/index.json \
        [--trained-on out/prep_earlier/index.json] [--live]
"""

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from openvasa.eval.metrics import blink_rate, pose_std
from openvasa.eval.motion_quality import load_validation_clips
from openvasa.eval.suite import frames_at
from openvasa.face.detect import FaceAnalyzer
from openvasa.face.latent import (
    EYE_OPEN,
    PITCH,
    YAW,
    FaceBasis,
    FaceLatent,
    FaceLatentCodec,
    Identity,
    mouth_opening,
    mouth_width,
)
from openvasa.motion.blinks import BLINK_FRACTION, BlinkCalibration, Blinks
from openvasa.motion.checkpoint import MotionCheckpoint
from openvasa.motion.generator import MotionGenerator, MotionStream
from openvasa.motion.head import MAX_GAIN, HeadCalibration, HeadRange, wander, wander_level
from openvasa.motion.mouth_regression import MouthRegression, clip_offsets, delayed, fit_directions, fit_taps
from openvasa.motion.settings import GenerationSettings
from openvasa.motion.signals import POSE
from openvasa.pipeline import Portrait, prepare_portrait, render_latents
from openvasa.units import FPS

# Shares of the open level tried. None below the metrics' blink line: a dip that counts as a blink (below half open)
# must look like one, or the renderer and the viewer lose it (re-detected, 9 of the latent's 24 a minute were seen).
THRESHOLDS = np.round(np.arange(BLINK_FRACTION, 0.96, 0.01), 2)
LEVELS = (0.0, 0.15)  # the head wander levels searched (radians)
# The mouth regression: frames t-3 ... t+7 (the mouth leads the sound), the audio encoder's first 128 principal
# components, and a strong ridge; each training clip's mouth at its own audio-video offset, found within MAX_OFFSET
# frames either way. The regression alone (mouth r; benchmarks/probe_mouth_offsets.py), on the training people
# each left out / on the validation people: 0.476 / 0.532 here; with the clips at their recorded offsets 0.434 /
# 0.487 (64 components, as shipped before: 0.426 / 0.488); 64 components 0.460 / 0.519, 192 0.465 / 0.516; a third
# of the ridge 0.468 / 0.527, three times it 0.478 / 0.528. Earlier, at recorded offsets: t-7 ... t+9 0.47 on the
# validation people, 32 components 0.45.
MOUTH_FIRST_TAP, MOUTH_TAPS, MOUTH_DIMS, MOUTH_RIDGE = -3, 11, 128, 3e4
MAX_OFFSET = 4
# Live models: frames t-10 ... t, the audio a session has (with 2 frames ahead instead: 0.445).
LIVE_FIRST_TAP = -10
BLENDS = np.round(np.arange(0.0, 1.01, 0.1), 1)


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


@dataclass
class Sampled:
    """One generation on a training clip, kept to be shaped under each candidate calibration."""

    clip: "RealClip"  # the real clip it was generated for (its person, audio features, mouth)
    new_stream: Callable[[], MotionStream]  # a fresh stream of the generation's clip, seed and settings
    motion: np.ndarray  # (T, M) denormalised
    seed: int

    @property
    def identity(self) -> str:
        return self.clip.identity

    def latent(self, head: HeadCalibration | None) -> tuple[FaceLatent, np.ndarray]:
        """The generation as `generate` makes it before the mouth is steered, with this head calibration, and the
        share of the steering kept at each frame (MotionStream.speaking)."""
        stream = self.new_stream()  # a fresh state each time: streams carry running means
        stream.head = HeadRange(head)
        return stream.smooth(stream.to_latent(self.motion, self.clip.features), whole=True), stream.speaking


@dataclass
class RealClip:
    identity: str
    eyes: np.ndarray  # (T, 2) openness
    pose: np.ndarray  # (T, 7)
    dynamics: np.ndarray  # (T, K)
    mouth: np.ndarray  # (T, 2) opening and width (eye distances)
    features: np.ndarray  # (T, A) the model's audio features
    neutral: np.ndarray  # (478, 3)
    offset: int = 0  # frames the mouth is delayed by to meet its audio (mouth_regression.clip_offsets)


def mouth_measures(latent: FaceLatent, neutral: np.ndarray, basis: FaceBasis) -> np.ndarray:
    """(T, 2) inner-lip opening and mouth width (eye distances) of a person's latent frames."""
    return np.stack([mouth_opening(latent, neutral, basis), mouth_width(latent, neutral, basis)], 1)


def sample_training_clips(
    generator: MotionGenerator, index: Path, settings: GenerationSettings, seeds: int = 2
) -> tuple[list[Sampled], list[RealClip]]:
    """The model's motion on the training clips (each from its rest frame, `seeds` seeds), and the real clips."""
    basis = FaceBasis.load()
    identities = {shard["file"]: shard["identity"] for shard in json.loads(index.read_text())["shards"]}
    samples, real = [], []
    for clip in load_validation_clips(index, split="train"):
        features = generator.audio_features(clip.audio)
        mouth = mouth_measures(clip.latent, clip.neutral, basis)
        latent = clip.latent
        real.append(
            RealClip(
                identities[clip.name],
                latent.eyes[:, EYE_OPEN],
                latent.pose,
                latent.dynamics,
                mouth,
                features,
                clip.neutral,
            )
        )
        opening = Identity(clip.neutral, clip.reference).rest_opening(basis)
        for seed in range(seeds):
            new_stream = partial(
                MotionStream, generator, clip.reference, basis, seed=seed, settings=settings, rest_opening=opening
            )
            motion = new_stream().sample_all(features)
            samples.append(Sampled(real[-1], new_stream, motion, seed))
    return samples, real


def trained_people(index: Path) -> set[str]:
    """The people of a prep index's training clips."""
    return {shard["identity"] for shard in json.loads(index.read_text())["shards"] if shard["split"] == "train"}


def eye_samples(samples: list[Sampled]) -> list[EyeSample]:
    streams = [s.new_stream() for s in samples]
    return [EyeSample(t.open_eyes(s.motion), t.open_level, s.seed) for s, t in zip(samples, streams, strict=True)]


def head_spread(samples: list[Sampled], calibration: HeadCalibration | None) -> float:
    """Mean yaw and pitch std (deg) of the samples' heads, generated as `generate` makes them, with this head
    calibration (None: as sampled)."""
    return float(np.mean([pose_std(s.latent(calibration)[0].pose) for s in samples]))


def shown_turn(portrait: Portrait, codec: FaceLatentCodec, analyzer: FaceAnalyzer) -> float | None:
    """The share of a head turn the renderer shows on this portrait: the yaw and pitch std of the pose re-detected
    in frames rendered as its head turns (5 deg of yaw, 3 of pitch, slow sinusoids), over the std asked; None when
    a frame's face is not found. A warp of a photograph turns the outline and the features but not the shading,
    and FaceMesh (as a viewer) reads a smaller turn."""
    frames, rest = np.arange(100), portrait.identity.reference
    asked = FaceLatent(*(np.repeat(a, len(frames), 0) for a in (rest.pose, rest.eyes, rest.dynamics)))
    asked.pose[:, YAW] += np.radians(5.0) * np.sin(2 * np.pi * frames / 50)
    asked.pose[:, PITCH] += np.radians(3.0) * np.sin(2 * np.pi * frames / 37)
    found = [analyzer.landmarks(frame) for frame in render_latents(portrait, asked, codec)]
    if any(f is None for f in found):
        return None
    return pose_std(codec.encode(np.stack(found), portrait.identity).pose) / pose_std(asked.pose)


def shown_rotation(index: Path, videos: Path) -> float:
    """The median share of a head turn the renderer shows (shown_turn) over the training clips' first frames."""
    codec, shares = FaceLatentCodec(), []
    with FaceAnalyzer(static=True) as analyzer:
        for shard in json.loads(index.read_text())["shards"]:
            if shard["split"] == "train":
                first = next(frames_at(videos / shard["clip"], np.array([shard["start_s"]])))
                share = shown_turn(prepare_portrait(first, codec=codec), codec, analyzer)
                shares += [] if share is None else [share]
    return float(np.median(shares))


def fit_head(samples: list[Sampled], real_std: float, shown: float = 1.0, iterations: int = 12) -> HeadCalibration:
    """The wander level (within LEVELS) at which the samples' head spread, as the renderer shows it (`shown` of
    it), equals the real one: the spread grows with the level, so bisection."""
    model_level = float(np.mean([wander_level(wander(s.motion[:, POSE])[0]) for s in samples]))

    def spread_at(level: float) -> float:
        return head_spread(samples, HeadCalibration(level, model_level, real_std, 0.0))

    # Past MAX_GAIN times the model's own level the typical sample's gain is capped, and a higher level only widens
    # the voices the model already moves a lot to (the 4-frame model, asked for the spread the renderer shows,
    # climbed to the search's end: gain 4 on every voice).
    low, high = LEVELS[0], min(LEVELS[1], MAX_GAIN * model_level)
    for _ in range(iterations):
        middle = (low + high) / 2
        low, high = (middle, high) if spread_at(middle) * shown < real_std else (low, middle)
    level = (low + high) / 2
    return HeadCalibration(level, model_level, real_std, spread_at(level), shown)


def fit_regression(clips: list[RealClip], blend: float | np.ndarray, first: int) -> MouthRegression:
    """The mouth regression fitted on these real clips, its taps from frame t + first to t + first + MOUTH_TAPS - 1."""
    centred = lambda x: x - x.mean(0)  # noqa: E731
    readout, directions = fit_directions(
        np.concatenate([centred(c.dynamics) for c in clips]), np.concatenate([centred(c.mouth) for c in clips])
    )
    mouths = [delayed(c.mouth, c.offset) for c in clips]
    taps = fit_taps([c.features for c in clips], mouths, first, MOUTH_TAPS, MOUTH_DIMS, MOUTH_RIDGE)
    return MouthRegression(taps, first, readout, directions, blend)


def mouth_r(
    samples: list[Sampled],
    latents: list[tuple[FaceLatent, np.ndarray]],
    regressions: dict[str, MouthRegression],
    blend: float,
    basis: FaceBasis,
) -> np.ndarray:
    """(2,) mean correlation of the samples' steered mouth opening and width with the real ones, both steered by
    `blend`; latents: the samples' unsteered latents and steering shares (Sampled.latent(None)); regressions: by
    the person each sample is of, fitted without that person."""
    rs = []
    for s, (unsteered, speaking) in zip(samples, latents, strict=True):
        latent = replace(regressions[s.identity], blend=blend).steer(unsteered, s.clip.features, speaking)
        measured = mouth_measures(latent, s.clip.neutral, basis)
        rs.append([np.corrcoef(measured[:, k], s.clip.mouth[:, k])[0, 1] for k in range(2)])
    return np.mean(rs, 0)


def fit_mouth(samples: list[Sampled], real: list[RealClip], first: int) -> tuple[MouthRegression, np.ndarray]:
    """The regression on every real clip, steering the opening and the width each by the blend of BLENDS that
    gives the samples (of people the model was not trained on) their highest correlation with the real measure,
    each scored with a regression fitted without its person; and those correlations at each blend, (len(BLENDS), 2).
    The directions move one measure without the other, so each share is fitted on its own (the width's peaked
    further along: 0.46 at 0.8-0.9 against 0.445 at the opening's 0.5, on the shipped model). The taps are fitted
    on each real clip's mouth at its own audio-video offset; the samples are scored against the mouth as recorded."""
    offsets = clip_offsets(
        [c.features for c in real],
        [c.mouth for c in real],
        [c.identity for c in real],
        MOUTH_FIRST_TAP,
        MOUTH_TAPS,
        MOUTH_DIMS,
        MOUTH_RIDGE,
        MAX_OFFSET,
    )
    real = [replace(c, offset=o) for c, o in zip(real, offsets, strict=True)]
    people = {s.identity for s in samples}
    regressions = {p: fit_regression([c for c in real if c.identity != p], 0.0, first) for p in people}
    basis = FaceBasis.load()
    latents = [s.latent(None) for s in samples]  # the same for every blend
    scores = np.array([mouth_r(samples, latents, regressions, float(b), basis) for b in BLENDS])
    return fit_regression(real, BLENDS[np.argmax(scores, 0)], first), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--index", type=Path, default=Path("out/prep/index.json"))
    parser.add_argument("--live", action="store_true", help="sample as live sessions do (the streaming models)")
    parser.add_argument(
        "--trained-on",
        type=Path,
        help="the prep index the checkpoint was trained on: the head range and the mouth's blend are fitted on "
        "the other training-split people of --index",
    )
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"), help="the clips of --index")
    args = parser.parse_args()
    generator = MotionGenerator(args.checkpoint)
    settings = GenerationSettings()
    if args.live:
        from openvasa.stream.session import stream_settings

        settings = stream_settings(window=generator.config.window)
    samples, real = sample_training_clips(generator, args.index, settings)
    eyes = eye_samples(samples)
    real_rate = blinks_per_minute([clip.eyes for clip in real])
    blinks = fit(eyes, real_rate)
    seen = trained_people(args.trained_on) if args.trained_on else set()
    held_out = [s for s in samples if s.identity not in seen]
    if not held_out:
        raise SystemExit(f"every training clip of {args.index} is of a person {args.trained_on} was trained on")
    shown = shown_rotation(args.index, args.videos)
    head = fit_head(held_out, float(np.mean([pose_std(c.pose) for c in real if c.identity not in seen])), shown)
    saved = MotionCheckpoint.load(args.checkpoint)
    saved.blink_calibration = blinks.to_dict()
    saved.head_calibration = head.to_dict()
    mouth, scores = fit_mouth(held_out, real, LIVE_FIRST_TAP if args.live else MOUTH_FIRST_TAP)
    saved.mouth_regression = mouth.to_dict()
    print(
        f"mouth opening / width r on {len(held_out)} generations at steering blends {BLENDS.tolist()}: "
        f"{np.round(scores[:, 0], 3).tolist()} / {np.round(scores[:, 1], 3).tolist()}; steering by {mouth.blend.tolist()}"
    )
    saved.save(args.checkpoint)
    print(
        f"training clips: real {real_rate:.1f} blinks/min; model {shaped_rate(eyes, None):.1f} uncalibrated, "
        f"{blinks.model_rate:.1f} with dips below {blinks.threshold:.2f} of open as blinks\n"
        f"head yaw/pitch std on {len(held_out)} generations: real {head.real_std:.2f} deg; model "
        f"{head_spread(held_out, None):.2f} uncalibrated, {head.model_std:.2f} with the wander brought up to "
        f"{np.degrees(head.level):.2f} deg (the model's own: {np.degrees(head.model_level):.2f}); the renderer shows "
        f"{head.shown:.2f} of a turn"
    )


if __name__ == "__main__":
    main()
