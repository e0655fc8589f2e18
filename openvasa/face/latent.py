"""The explicit, disentangled face latent: landmarks <-> {identity, head pose, dynamics, eyes}.

A frame's 478 landmarks are explained as

    points = scale * R(yaw, pitch, roll) @ canonical + (tx, ty, tz)
    canonical = identity.neutral + eye_basis @ (eyes - eye_mean) + dynamics_basis @ dynamics

where `canonical` is the face in a frontal, unit-eye-distance frame, `eyes` holds openness and iris
offsets (explicit, so blinks and gaze can be driven directly) and `dynamics` is a PCA code of every
other expression change (mouth, brows, cheeks). Both bases are fitted on within-person changes of real
talking videos (`openvasa.tools.fit_basis`), so identity (the neutral shape) is what stays fixed for a
person, and pose is fitted on rigid points only: pose-only and dynamics-only driving fall out.
"""

from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from openvasa.face import landmarks as lm
from openvasa.face.geometry import euler_to_matrix, fit_similarity, matrix_to_euler

BASIS_FILE = "face_basis.npz"
N_EYE = 6  # openness (right, left), iris offset (right x, y, left x, y)
N_POSE = 7  # yaw, pitch, roll (rad), tx, ty, tz (px), scale (px per eye distance)
# The layouts of a latent's pose and eyes, named once (the motion vector's is in openvasa.motion.signals).
YAW, PITCH, ROLL = 0, 1, 2
POSE_ANGLES = slice(YAW, ROLL + 1)
TX = 3
POSE_SHIFT = slice(TX, TX + 3)  # tx, ty, tz
POSE_SCALE = 6
EYE_OPEN = slice(0, 2)  # openness, right and left
EYE_IRIS = slice(2, 6)  # iris offsets


@dataclass
class FaceBasis:
    """Shipped statistics of the latent space.

    mean: (478, 3) frontal canonical mean shape, unit outer-eye distance, rigid centroid at 0;
    eye_basis: (478*3, 6); eye_mean: (6,); dynamics_basis: (478*3, K) orthonormal columns;
    dynamics_var: (K,) variance of each code; identity_var: () per-coordinate variance of neutral shapes
    between people (the prior that separates a portrait's expression from its identity).
    """

    mean: np.ndarray
    eye_basis: np.ndarray
    eye_mean: np.ndarray
    dynamics_basis: np.ndarray
    dynamics_var: np.ndarray
    identity_var: float

    @property
    def n_dynamics(self) -> int:
        return self.dynamics_basis.shape[1]

    @cached_property
    def mirror_permutation(self) -> np.ndarray:
        """(478,) index of each landmark's mirror partner."""
        return mirror_permutation(self.mean)

    @cached_property
    def dynamics_mirror(self) -> np.ndarray:
        """(K, K) map of dynamics codes under a horizontal flip."""
        columns = self.dynamics_basis.T.reshape(-1, lm.N_LANDMARKS, 3)  # (K, 478, 3)
        flipped = columns[:, self.mirror_permutation] * np.array([-1.0, 1.0, 1.0])
        return self.dynamics_basis.T @ flipped.reshape(len(columns), -1).T

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            mean=self.mean.astype(np.float32),
            eye_basis=self.eye_basis.astype(np.float32),
            eye_mean=self.eye_mean.astype(np.float32),
            dynamics_basis=self.dynamics_basis.astype(np.float32),
            dynamics_var=self.dynamics_var.astype(np.float32),
            identity_var=np.float32(self.identity_var),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> "FaceBasis":
        if path is None:
            path = resources.files("openvasa") / "assets" / BASIS_FILE
        with np.load(str(path)) as z:
            return cls(
                mean=z["mean"].astype(np.float64),
                eye_basis=z["eye_basis"].astype(np.float64),
                eye_mean=z["eye_mean"].astype(np.float64),
                dynamics_basis=z["dynamics_basis"].astype(np.float64),
                dynamics_var=z["dynamics_var"].astype(np.float64),
                identity_var=float(z["identity_var"]),
            )

    def expression(self, eyes: np.ndarray, dynamics: np.ndarray) -> np.ndarray:
        """Canonical offset from the neutral shape. eyes: (T, 6), dynamics: (T, K) -> (T, 478, 3)."""
        flat = (eyes - self.eye_mean) @ self.eye_basis.T + dynamics @ self.dynamics_basis.T
        return flat.reshape(len(eyes), lm.N_LANDMARKS, 3)


@dataclass
class FaceLatent:
    """Per-frame motion of one face. pose: (T, 7); eyes: (T, 6); dynamics: (T, K)."""

    pose: np.ndarray
    eyes: np.ndarray
    dynamics: np.ndarray

    def __len__(self) -> int:
        return len(self.pose)

    def __getitem__(self, index: slice | np.ndarray) -> "FaceLatent":
        return FaceLatent(self.pose[index], self.eyes[index], self.dynamics[index])

    def copy(self) -> "FaceLatent":
        return FaceLatent(self.pose.copy(), self.eyes.copy(), self.dynamics.copy())


def fit_pose(points: np.ndarray, basis: FaceBasis) -> np.ndarray:
    """Head pose of each frame from its rigid landmarks. points: (T, 478, 3) -> (T, 7)."""
    rigid = list(lm.RIGID)
    out = np.empty((len(points), N_POSE))
    for i, frame in enumerate(points):
        scale, rot, t = fit_similarity(basis.mean[rigid], frame[rigid].astype(np.float64))
        out[i, POSE_ANGLES] = matrix_to_euler(rot)
        out[i, POSE_SHIFT] = t
        out[i, POSE_SCALE] = scale
    return out


def pose_transform(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 7) -> scaled rotations (T, 3, 3) and translations (T, 3)."""
    rot = euler_to_matrix(*pose[:, POSE_ANGLES].T) * pose[:, POSE_SCALE, None, None]
    return rot, pose[:, POSE_SHIFT]


def to_canonical(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Undo head pose. points: (T, 478, 3), pose: (T, 7) -> (T, 478, 3) canonical shapes."""
    rot, t = pose_transform(pose)
    return np.einsum("tij,tnj->tni", np.linalg.inv(rot), points - t[:, None])


def from_canonical(canonical: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Apply head pose. canonical: (T, 478, 3), pose: (T, 7) -> (T, 478, 3) pixels."""
    rot, t = pose_transform(pose)
    return np.einsum("tij,tnj->tni", rot, canonical) + t[:, None]


def measure_eyes(canonical: np.ndarray) -> np.ndarray:
    """Openness and iris offsets (in eye widths, canonical frame) of each eye. (T, 478, 3) -> (T, 6)."""
    openness = lm.eye_openness(canonical)
    offsets = []
    for iris, (a, b) in ((lm.RIGHT_IRIS, lm.RIGHT_EYE_CORNERS), (lm.LEFT_IRIS, lm.LEFT_EYE_CORNERS)):
        centre = (canonical[:, a, :2] + canonical[:, b, :2]) / 2
        width = np.linalg.norm(canonical[:, a, :2] - canonical[:, b, :2], axis=-1)[:, None]
        offsets.append((canonical[:, iris[0], :2] - centre) / width)
    return np.concatenate([openness, offsets[0], offsets[1]], axis=-1)


def gaze_to_iris_offset(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Iris offset (x, y in eye widths) of an eye looking yaw (right of image +) and pitch (up +) degrees.

    The eyeball radius is about 0.4 eye widths, so the iris moves by 0.4 * sin(angle).
    """
    return 0.4 * np.sin(np.radians([yaw_deg, -pitch_deg]))


def mouth_opening(latent: FaceLatent, neutral: np.ndarray, basis: FaceBasis) -> np.ndarray:
    """(T,) pose-free inner-lip opening (eye distances) of a person's latent frames."""
    return lm.mouth_opening(neutral + basis.expression(latent.eyes, latent.dynamics))


def mouth_width(latent: FaceLatent, neutral: np.ndarray, basis: FaceBasis) -> np.ndarray:
    """(T,) pose-free mouth-corner distance (eye distances) of a person's latent frames: narrower as lips round."""
    return lm.mouth_width(neutral + basis.expression(latent.eyes, latent.dynamics))


@dataclass
class Identity:
    """A person's neutral canonical shape (478, 3) plus the latent of their reference frame."""

    neutral: np.ndarray
    reference: FaceLatent

    def rest_opening(self, basis: "FaceBasis") -> float:
        """Inner-lip opening of the reference frame (eye distances, pose-free)."""
        return float(mouth_opening(self.reference, self.neutral, basis)[0])


class FaceLatentCodec:
    """Encode landmarks to FaceLatent and decode back, with a shipped FaceBasis."""

    def __init__(self, basis: FaceBasis | None = None) -> None:
        self.basis = basis or FaceBasis.load()

    def encode(self, points: np.ndarray, identity: Identity | None = None) -> FaceLatent:
        """points: (T, 478, 3) pixels -> FaceLatent. Dynamics are relative to `identity.neutral` (or to
        the mean face when no identity is given, which is only meaningful for relative use)."""
        b = self.basis
        pose = fit_pose(points, b)
        canonical = to_canonical(points.astype(np.float64), pose)
        eyes = measure_eyes(canonical)
        neutral = b.mean if identity is None else identity.neutral
        rest = canonical - neutral - (((eyes - b.eye_mean) @ b.eye_basis.T).reshape(canonical.shape))
        dynamics = rest.reshape(len(points), -1) @ b.dynamics_basis
        return FaceLatent(pose, eyes, dynamics)

    def decode(self, latent: FaceLatent, identity: Identity) -> np.ndarray:
        """FaceLatent -> (T, 478, 3) landmark pixels."""
        canonical = identity.neutral + self.basis.expression(latent.eyes, latent.dynamics)
        return from_canonical(canonical, latent.pose)

    def identity_of(self, points: np.ndarray) -> Identity:
        """Identity of one portrait. points: (478, 3).

        The portrait's expression is the most probable dynamics code given that identity differs from
        the mean face by `identity_var` per coordinate (MAP under the PCA prior); what the code cannot
        explain is identity. A smiling portrait thus gets a smile code that the motion can relax.
        """
        b = self.basis
        pose = fit_pose(points[None], b)
        canonical = to_canonical(points[None].astype(np.float64), pose)
        eyes = measure_eyes(canonical)
        offset = canonical[0] - b.mean - ((eyes - b.eye_mean) @ b.eye_basis.T).reshape(lm.N_LANDMARKS, 3)
        shrink = b.dynamics_var / (b.dynamics_var + b.identity_var)
        dynamics = (offset.reshape(-1) @ b.dynamics_basis) * shrink
        reference = FaceLatent(pose, eyes, dynamics[None])
        neutral = canonical[0] - b.expression(eyes, dynamics[None])[0]
        return Identity(neutral, reference)


def mirror_permutation(mean: np.ndarray) -> np.ndarray:
    """(478,) index of each landmark's mirror partner (right eye <-> left eye, ...), from a frontal mean."""
    mirrored = mean * np.array([-1.0, 1.0, 1.0])
    return np.linalg.norm(mirrored[:, None] - mean[None], axis=-1).argmin(1)


def mirror_points(points: np.ndarray, width: float, permutation: np.ndarray) -> np.ndarray:
    """Landmarks of the horizontally flipped image. points: (..., 478, 3) pixels of an image `width` wide."""
    out = points[..., permutation, :].copy()
    out[..., 0] = width - out[..., 0]
    return out


def mirror_latent(latent: FaceLatent, basis: FaceBasis, width: float) -> FaceLatent:
    """The latent of the horizontally flipped video (an augmentation: a mirrored talker is as natural).

    Pose: yaw and roll change sign, x translation mirrors; eyes: left and right swap, iris x offsets
    change sign; dynamics: the mirror map projected into the basis (exact for a mirror-symmetric basis,
    which fit_basis makes by fitting on mirrored clips too)."""
    pose = latent.pose.copy()
    pose[:, [YAW, ROLL]] *= -1
    pose[:, TX] = width - pose[:, TX]
    eyes = latent.eyes[:, [1, 0, 4, 5, 2, 3]].copy()
    eyes[:, [2, 4]] *= -1
    return FaceLatent(pose, eyes, latent.dynamics @ basis.dynamics_mirror.T)


def rest_frame(eyes: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Frames at rest: eyes at least as open as the median frame's (no blink, no squint) and lips among
    the most closed tenth of those. eyes: (T, 6), mouth: (T,) -> indices."""
    openness = eyes[:, EYE_OPEN].mean(1)
    open_eyes = np.flatnonzero(openness >= np.median(openness))
    return open_eyes[mouth[open_eyes] <= np.percentile(mouth[open_eyes], 10)]
