"""The range of the generated head motion: how far the head wanders, brought to real people's.

Sampled heads move as fast as real ones from frame to frame (0.29 deg/frame on the training people, as real) but
wander less far: their yaw and pitch spread 84% of real on the people the model was trained on, 57% on other
people's clips of the training split and 47% on the validation people. Neither more sampling steps nor another
sampler change that, and more audio guidance speeds up every frame, not only the wander.

So the head's wander, the part of its offset from the portrait's pose that changes over one to ten seconds (a
running mean over one second less one over ten, each over the frames there are so far), is amplified towards a
level fitted per model (HeadCalibration, openvasa.tools.calibrate). The gain follows the wander's running level:
a fixed gain that brought the average up also tripled the wander of a voice the model already moved a lot to (yaw
8.8 deg std on the astronaut, where real heads spread 1-8), and nothing in the audio tells how far a person's head
goes (its loudness, across the 38 clips: r 0.1 with the real spread). The fast part (nods, shakes, the sampled
frame-to-frame motion) and the slower one (the mean over ten seconds, where amplified wander read as drift) stay
as sampled, and so does the head's shift, whose spread is nearer real (0.73 of it on the validation people):
amplified with the angles, the nose of a 20 s generation travelled 0.6 eye distances up and down, above any real
clip's 0.1-0.5. Causal: it runs block by block in live sessions exactly as it does offline.

Turns away from the camera are then bounded (bound_turn): the renderer shows them by stretching a cheek it cannot
see.
"""

from dataclasses import asdict, dataclass

import numpy as np

from openvasa.face.latent import PITCH, POSE_ANGLES, YAW

# Time constants (frames at 25 fps) of the running means whose difference is the wander. A shorter first one reaches
# the same spread with a smaller gain but speeds the head up more (on the training people: 12 frames, +12%
# deg/frame; 25, +5%).
SLOW_FRAMES, DRIFT_FRAMES = 25.0, 250.0
LEVEL_FRAMES = 250.0  # time constant of the wander's running level (its RMS over yaw and pitch)
# With the wander taken about the means of the frames there are (WanderState), the offline model's own is 0.79 deg
# RMS on the held-out training people (1.2 when a clip's start read as wander), and a gain of 4 widened its heads
# to 0.81 of the real spread there (shown by the renderer); 6 reaches it.
MAX_GAIN = 6.0
# Turns away from the camera: a warp shows them by stretching the far cheek over pixels the portrait hides, and a 3/4
# portrait (a sixth of the 202 shared ones are turned 15 deg or more) that turned further out showed a straight cut
# down its far cheek. Real heads in the 38 shared clips stayed within 35 deg of the camera.
MAX_YAW = np.radians(30.0)  # how far from the camera a generated head turns, softly
MIN_OUTWARD = np.radians(4.0)  # the room outward of a portrait turned that far already


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


@dataclass
class WanderState:
    """The wander's running means, carried from block to block: exponentially weighted sums of the angle offsets
    and of ones over the frames so far, whose ratio is the mean. So near a stream's start each mean is that of the
    frames there are, not one pulled towards the portrait's pose by frames that never were: a head that drifted
    from the portrait's pose in its first seconds (the model's yaw, +1.5 deg on the validation voices) read as
    wander and came out amplified (+3.5 deg)."""

    sums: np.ndarray  # (2, 3) the 1 s and 10 s sums of yaw, pitch and roll offsets
    weights: np.ndarray  # (2, 1)

    @classmethod
    def start(cls) -> "WanderState":
        return cls(np.zeros((2, 3)), np.zeros((2, 1)))


def wander(delta: np.ndarray, state: WanderState | None = None) -> tuple[np.ndarray, WanderState]:
    """delta: (T, 7) pose offsets from the portrait's (openvasa.motion.signals.pose_delta); state: the running
    means after the frames before (None: a stream's start). -> (T, 3) the yaw, pitch and roll wander, and the
    running means after the last frame."""
    state = WanderState.start() if state is None else state
    sums, weights = state.sums.copy(), state.weights.copy()
    keep = 1.0 - 1.0 / np.array([[SLOW_FRAMES], [DRIFT_FRAMES]])
    out = np.empty((len(delta), 3))
    for t, offset in enumerate(delta[:, POSE_ANGLES]):
        sums, weights = sums * keep + offset, weights * keep + 1.0
        means = sums / weights
        out[t] = means[0] - means[1]
    return out, WanderState(sums, weights)


def wander_level(wandering: np.ndarray) -> float:
    """RMS (radians) of the yaw and pitch wander (T, 3)."""
    return float(np.sqrt(np.mean(wandering[:, [YAW, PITCH]] ** 2)))


class HeadRange:
    """Amplifies the wander of a stream of head pose offsets (from the portrait's pose) towards the calibration's
    level, by at most MAX_GAIN; never damps it. None leaves the offsets as they are."""

    def __init__(self, calibration: HeadCalibration | None = None) -> None:
        self.calibration = calibration
        self.means: WanderState | None = None  # the wander's running means, carried across calls
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


def bound_turn(yaw: np.ndarray, reference_yaw: float) -> np.ndarray:
    """Yaw offsets (T,) (radians) from a portrait turned reference_yaw -> the same with the head's turns away from
    the camera bounded softly: as they are up to MAX_YAW / 2 from the camera (or the portrait's own turn, if
    further), then bending smoothly towards MAX_YAW (or MIN_OUTWARD past the portrait's turn). Turns towards the
    camera are left as they are."""
    turned = reference_yaw + np.asarray(yaw, np.float64)
    for side in (1.0, -1.0):
        knee = max(side * reference_yaw, MAX_YAW / 2)
        room = max(MAX_YAW, side * reference_yaw + MIN_OUTWARD) - knee
        beyond = side * turned > knee
        turned[beyond] = side * (knee + room * np.tanh((side * turned[beyond] - knee) / room))
    return turned - reference_yaw
