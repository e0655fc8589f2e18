"""The range of the generated head motion: how far the head wanders, brought to real people's.

Sampled heads move as fast as real ones from frame to frame (0.29 deg/frame on the training people, as real) but
wander less far: their yaw and pitch spread 84% of real on the people the model was trained on, 57% on other
people's clips of the training split and 47% on the validation people. Neither more sampling steps nor another
sampler change that, and more audio guidance speeds up every frame, not only the wander.

So the head's wander, the part of its offset from the portrait's pose that changes over one to ten seconds (a
running mean over one second less one over ten), is amplified towards a level fitted per model (HeadCalibration,
openvasa.tools.calibrate). The gain follows the wander's running level: a fixed gain that brought the average up
also tripled the wander of a voice the model already moved a lot to (yaw 8.8 deg std on the astronaut, where real
heads spread 1-8), and nothing in the audio tells how far a person's head goes (its loudness, across the 38
clips: r 0.1 with the real spread). The fast part (nods, shakes, the sampled frame-to-frame motion) and the slower
one (the mean over ten seconds, where amplified wander read as drift) stay as sampled, and so does the head's
shift, whose spread is nearer real (0.73 of it on the validation people): amplified with the angles, the nose of
a 20 s generation travelled 0.6 eye distances up and down, above any real clip's 0.1-0.5. Causal: it runs block
by block in live sessions exactly as it does offline.
"""

from dataclasses import asdict, dataclass

import numpy as np

from openvasa.face.latent import PITCH, POSE_ANGLES, YAW

# Time constants (frames at 25 fps) of the running means whose difference is the wander. A shorter first one reaches
# the same spread with a smaller gain but speeds the head up more (on the training people: 12 frames, +12%
# deg/frame; 25, +5%).
SLOW_FRAMES, DRIFT_FRAMES = 25.0, 250.0
LEVEL_FRAMES = 250.0  # time constant of the wander's running level (its RMS over yaw and pitch)
MAX_GAIN = 4.0


@dataclass
class HeadCalibration:
    """The wander level of one motion model's heads; stored in its checkpoint (MotionCheckpoint.head_calibration)."""

    level: float  # RMS of the yaw and pitch wander (radians) that the gain brings the wander up to
    model_level: float  # the model's own wander RMS on the clips the level was fitted on: where the gain starts
    real_std: float  # yaw and pitch std (deg) of the real clips the level was fitted on, which it gives...
    model_std: float  # ...and what the model gave there with it, in the latent
    # The share of a head turn the renderer shows (re-detected in rendered frames); the level is fitted for the
    # shown spread to equal the real one. 1: fitted in the latent (a checkpoint calibrated before it was measured).
    shown: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}  # plain floats: checkpoints load weights only

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> "HeadCalibration":
        return cls(**d)


def wander(delta: np.ndarray, means: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """delta: (T, 7) pose offsets from the portrait's (openvasa.motion.signals.pose_delta); means: (2, 3) the
    running means after the frames before (None: a stream's start). -> (T, 3) the yaw, pitch and roll wander, and
    the running means after the last frame."""
    means = np.zeros((2, 3)) if means is None else means.copy()
    rates = 1.0 / np.array([[SLOW_FRAMES], [DRIFT_FRAMES]])
    out = np.empty((len(delta), 3))
    for t, offset in enumerate(delta[:, POSE_ANGLES]):
        means += (offset - means) * rates
        out[t] = means[0] - means[1]
    return out, means


def wander_level(wandering: np.ndarray) -> float:
    """RMS (radians) of the yaw and pitch wander (T, 3)."""
    return float(np.sqrt(np.mean(wandering[:, [YAW, PITCH]] ** 2)))


class HeadRange:
    """Amplifies the wander of a stream of head pose offsets (from the portrait's pose) towards the calibration's
    level, by at most MAX_GAIN; never damps it. None leaves the offsets as they are."""

    def __init__(self, calibration: HeadCalibration | None = None) -> None:
        self.calibration = calibration
        self.means: np.ndarray | None = None  # the wander's running means, carried across calls
        # The wander's running power starts at the model's typical one, so a clip starts at the typical gain: from
        # the first frame's zero wander it would start at the largest, or from the level at none.
        self.power = calibration.model_level**2 if calibration is not None else 0.0

    def apply(self, delta: np.ndarray) -> np.ndarray:
        """delta: (T, 7) pose offsets from the portrait's (openvasa.motion.signals.pose_delta). Returns a copy with
        the angles' wander amplified."""
        out = delta.copy()
        if self.calibration is None:
            return out
        wandering, self.means = wander(delta, self.means)
        gains = np.empty(len(out))
        for t, w in enumerate(wandering):
            self.power += (np.mean(w[[YAW, PITCH]] ** 2) - self.power) / LEVEL_FRAMES
            gains[t] = np.clip(self.calibration.level / np.sqrt(max(self.power, 1e-12)), 1.0, MAX_GAIN)
        out[:, POSE_ANGLES] += (gains[:, None] - 1.0) * wandering
        return out
