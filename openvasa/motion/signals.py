"""The signals the motion model sees, shared by training and generation: the motion vector layout, its
normalisation statistics, and the control signals (gaze, head distance, emotion) derived from motion.

Motion per frame (M = 7 + 6 + K): pose relative to a reference pose (angles in rad, translation in eye
distances, log scale ratio), eyes (openness right/left, iris offsets), dynamics (K codes).
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch

from openvasa.face.latent import EYE_IRIS, EYE_OPEN, N_EYE, N_POSE, POSE_ANGLES, POSE_SCALE, POSE_SHIFT

# The motion vector: a pose delta laid out as the latent's pose (openvasa.face.latent), the latent's eyes, dynamics.
POSE = slice(0, N_POSE)
EYES = slice(N_POSE, N_POSE + N_EYE)
OPENNESS = slice(EYES.start + EYE_OPEN.start, EYES.start + EYE_OPEN.stop)
GAZE = slice(EYES.start + EYE_IRIS.start, EYES.start + EYE_IRIS.stop)
LOG_SCALE = POSE.start + POSE_SCALE
N_FIXED = EYES.stop  # motion dimensions before the dynamics codes


def dynamics_slice(motion_dim: int) -> slice:
    return slice(N_FIXED, motion_dim)


def pose_delta(pose: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pose relative to a reference pose, independent of the framing. pose: (T, 7), reference: (7,) -> (T, 7):
    angle differences (rad), translation difference in reference eye distances, log scale ratio."""
    delta = np.empty_like(pose, dtype=np.float64)
    delta[:, POSE_ANGLES] = pose[:, POSE_ANGLES] - reference[POSE_ANGLES]
    delta[:, POSE_SHIFT] = (pose[:, POSE_SHIFT] - reference[POSE_SHIFT]) / reference[POSE_SCALE]
    delta[:, POSE_SCALE] = np.log(pose[:, POSE_SCALE] / reference[POSE_SCALE])
    return delta


def pose_from_delta(delta: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The inverse of pose_delta. delta: (T, 7), reference: (7,) -> (T, 7) pose."""
    pose = np.empty_like(delta, dtype=np.float64)
    pose[:, POSE_ANGLES] = reference[POSE_ANGLES] + delta[:, POSE_ANGLES]
    pose[:, POSE_SHIFT] = reference[POSE_SHIFT] + delta[:, POSE_SHIFT] * reference[POSE_SCALE]
    pose[:, POSE_SCALE] = reference[POSE_SCALE] * np.exp(delta[:, POSE_SCALE])
    return pose


@dataclass
class MotionStats:
    """Per-dimension mean/std of motion (M,) and audio features (A,), and of the derived controls."""

    motion_mean: np.ndarray
    motion_std: np.ndarray
    audio_mean: np.ndarray
    audio_std: np.ndarray
    gaze_mean: np.ndarray  # (2,) mean iris offset of both eyes
    gaze_std: np.ndarray
    distance_std: float  # std of window-mean log scale
    emotion_std: np.ndarray  # (K,) std of window-mean dynamics
    openness_mean: float  # typical eye openness in the data, to rescale to a portrait's eyes

    @classmethod
    def fit(cls, motion: np.ndarray, audio: np.ndarray, window: int) -> "MotionStats":
        """motion: (N, M), audio: (N, A) frames from the training windows (in window order)."""
        n = len(motion) // window * window
        per_window = motion[:n].reshape(-1, window, motion.shape[1]).mean(1)
        k = dynamics_slice(motion.shape[1])
        gaze = _mean_gaze(per_window)
        return cls(
            motion_mean=motion.mean(0),
            motion_std=motion.std(0) + 1e-6,
            audio_mean=audio.mean(0),
            audio_std=audio.std(0) + 1e-6,
            gaze_mean=gaze.mean(0),
            gaze_std=gaze.std(0) + 1e-6,
            distance_std=float(per_window[:, LOG_SCALE].std() + 1e-6),
            emotion_std=per_window[:, k].std(0) + 1e-6,
            openness_mean=float(motion[:, OPENNESS].mean()),
        )

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MotionStats":
        return cls(**{k: (np.array(v, np.float64) if isinstance(v, list) else v) for k, v in d.items()})


def mean_iris(iris: np.ndarray) -> np.ndarray:
    """(..., 4) iris offsets (right x, y, left x, y) -> (..., 2) their mean over both eyes: where the gaze goes."""
    return (iris[..., 0:2] + iris[..., 2:4]) / 2


def _mean_gaze(motion: np.ndarray) -> np.ndarray:
    """(..., M) -> (..., 2): iris offset averaged over both eyes."""
    return mean_iris(motion[..., GAZE])


@dataclass
class ControlSignals:
    """Normalised control values for a batch (tensors): gaze (N, 2), distance (N, 1), emotion (N, K)."""

    gaze: torch.Tensor
    distance: torch.Tensor
    emotion: torch.Tensor


def controls_from_motion(motion: torch.Tensor, stats: MotionStats) -> ControlSignals:
    """The controls a window of real motion (N, T, M), not normalised, exhibits: its mean gaze, mean head
    distance (log scale) and mean expression offset from the data mean. Training teaches the model to
    produce motion with the controls it is given."""
    mean = motion.mean(1)  # (N, M)
    k = dynamics_slice(motion.shape[-1])
    t = lambda a: torch.as_tensor(a, dtype=motion.dtype)  # noqa: E731
    gaze = (_mean_gaze(mean) - t(stats.gaze_mean)) / t(stats.gaze_std)
    distance = mean[:, LOG_SCALE : LOG_SCALE + 1] / stats.distance_std
    emotion = (mean[:, k] - t(stats.motion_mean[k])) / t(stats.emotion_std)
    return ControlSignals(gaze, distance, emotion)


def normalise(x: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    return (x - torch.as_tensor(mean, dtype=x.dtype)) / torch.as_tensor(std, dtype=x.dtype)


def denormalise(x: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    return x * torch.as_tensor(std, dtype=x.dtype) + torch.as_tensor(mean, dtype=x.dtype)
