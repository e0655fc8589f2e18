"""User controls of generated motion: gaze, head distance, emotion and head-motion amount.

Emotion presets are geometric templates in the canonical face frame (unit outer-eye distance, x right,
y down, z away from the camera): a few landmark groups are moved, the move is spread to neighbouring
points with a Gaussian falloff, and the result is fitted in the dynamics basis at call time, so the
presets always match the shipped basis.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis

EMOTIONS = ("neutral", "happy", "sad", "surprised", "angry")
MOTION_MODELS = ("dit", "baseline")  # the learned model (openvasa.motion.generator), the hand-built one (baseline)
# Each control as a user types it: the CLI's flags, the server's form and query fields and the web page's sliders
# are all read with MotionControls.from_text, so a new control is added in the dataclass and here only.
CONTROL_HELP = {
    "gaze": "gaze direction YAW,PITCH in degrees (+yaw: image right, +pitch: up; default: the portrait's own)",
    "distance": "head distance relative to the portrait (1.2 = 20% farther; default 1)",
    "emotion": f"{', '.join(EMOTIONS)}, optionally with an intensity as NAME:STRENGTH (happy:0.5), or a raw "
    "comma-separated dynamics offset (default: the portrait's own)",
    "emotion_strength": "scale of the emotion (default 1; multiplies a NAME:STRENGTH intensity)",
    "motion_scale": "amount of head motion (0 = a still head; default 1)",
}

_RIGHT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
_LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
_JAW = (17, 14, 84, 314, 87, 317, 152, 148, 377)
# Points that move by more than this share of a template's largest move are fitted KEY_WEIGHT times
# harder than the rest: the basis, fitted on talking faces, cannot hold every template exactly, and the
# moved features matter more than a faint spill-over elsewhere.
_KEY_SHARE = 0.3
_KEY_WEIGHT = 10.0
_MOUTH_LINE_SOFTNESS = 0.01
_GAP_WEIGHT = 30.0


@dataclass(frozen=True)
class _Move:
    """Landmark group moved by `shift` (canonical units), spread with a Gaussian of width `sigma`.

    side: "upper"/"lower" keeps the move above/below the lip line, so that the two lips, which lie close
    together, can move apart.
    """

    indices: tuple[int, ...]
    shift: tuple[float, float, float]
    sigma: float
    side: str | None = None


_PRESETS: dict[str, tuple[_Move, ...]] = {
    "neutral": (),
    "happy": (
        _Move((61,), (-0.03, -0.045, 0.0), 0.07),
        _Move((291,), (0.03, -0.045, 0.0), 0.07),
        _Move((205, 50), (0.0, -0.025, 0.0), 0.1),
        _Move((425, 280), (0.0, -0.025, 0.0), 0.1),
    ),
    "sad": (
        _Move((61,), (0.008, 0.035, 0.0), 0.07),
        _Move((291,), (-0.008, 0.035, 0.0), 0.07),
        _Move((55, 107), (0.01, -0.035, 0.0), 0.05),
        _Move((285, 336), (-0.01, -0.035, 0.0), 0.05),
    ),
    "surprised": (
        _Move(_RIGHT_BROW + _LEFT_BROW, (0.0, -0.05, 0.0), 0.08),
        _Move(_JAW, (0.0, 0.04, 0.0), 0.12, "lower"),
    ),
    "angry": (
        _Move((55, 107, 65, 66), (0.03, 0.055, 0.0), 0.05),
        _Move((285, 336, 295, 296), (-0.03, 0.055, 0.0), 0.05),
        _Move((61,), (0.005, 0.02, 0.0), 0.06),
        _Move((291,), (-0.005, 0.02, 0.0), 0.06),
        _Move(lm.LIPS_OUTER_UPPER[1:-1], (0.0, 0.012, 0.0), 0.03, "upper"),
        _Move(lm.LIPS_OUTER_LOWER[1:-1], (0.0, -0.012, 0.0), 0.03, "lower"),
    ),
}
# Eye openness factors at strength 1: the lids live in the eye channel, not in the dynamics basis.
_EYE_OPENNESS = {"neutral": 1.0, "happy": 0.85, "sad": 0.9, "surprised": 1.25, "angry": 0.85}


@dataclass(frozen=True)
class MotionControls:
    """Controls of generated motion.

    gaze: (yaw, pitch) degrees of both eyes relative to the face, yaw + towards image right, pitch + up;
        (0, 0) is the mean iris position of the training videos (basis.eye_mean), which look at the
        camera; None keeps the portrait's own gaze. Small natural saccades are added either way.
    distance: head distance relative to the portrait (1.25 = 25% farther, face scale / 1.25).
    emotion: a name from EMOTIONS, a raw (K,) dynamics offset, or None for the portrait's own expression; a name
        may carry its intensity, "happy:0.5", which is then multiplied into emotion_strength (the field keeps the name).
    emotion_strength: multiplies the emotion offset (1.0 = clearly visible, natural), and the eye-openness change.
    motion_scale: amount of head motion; 0 keeps the head still while lips, eyes and blinks stay alive.
    """

    gaze: tuple[float, float] | None = None
    distance: float = 1.0
    emotion: str | np.ndarray | None = None
    emotion_strength: float = 1.0
    motion_scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.emotion, str):
            name, strength = parse_emotion(self.emotion)
            object.__setattr__(self, "emotion", name)
            object.__setattr__(self, "emotion_strength", self.emotion_strength * strength)
        if not (math.isfinite(self.distance) and self.distance > 0):
            raise OpenVasaError(f"distance must be a positive number, got {self.distance}")
        if not (math.isfinite(self.motion_scale) and self.motion_scale >= 0):
            raise OpenVasaError(f"motion_scale must be 0 or more, got {self.motion_scale}")
        if not math.isfinite(self.emotion_strength):
            raise OpenVasaError(f"emotion_strength must be a finite number, got {self.emotion_strength}")
        if self.gaze is not None and (len(self.gaze) != 2 or not all(math.isfinite(g) for g in self.gaze)):
            raise OpenVasaError(f"gaze must be two finite angles (yaw, pitch) in degrees, got {self.gaze}")

    @classmethod
    def from_text(cls, values: Mapping[str, object]) -> "MotionControls":
        """Controls from text fields named as this dataclass's (CLI flags, form and query fields); a missing or
        empty field keeps its default. An unreadable one is an OpenVasaError that names it."""
        given = {}
        for field in fields(cls):
            text = str(values.get(field.name) or "").strip()
            if not text:
                continue
            try:
                if field.name == "gaze":
                    given["gaze"] = tuple(float(v) for v in text.split(","))
                elif field.name == "emotion":
                    # A preset (NAME or NAME:STRENGTH, read by __post_init__) or a raw vector, which has a value per code.
                    given["emotion"] = text if "," not in text else np.array([float(v) for v in text.split(",")])
                else:
                    given[field.name] = float(text)
            except ValueError:
                raise OpenVasaError(f"{field.name}: cannot read {text!r}; {CONTROL_HELP[field.name]}") from None
        return cls(**given)


def parse_emotion(text: str) -> tuple[str, float]:
    """A preset as typed, NAME or NAME:STRENGTH (happy:0.5) -> (name, strength); an OpenVasaError for another name
    or an unreadable strength."""
    name, colon, strength = (part.strip() for part in text.partition(":"))
    if name not in EMOTIONS:
        raise OpenVasaError(f"unknown emotion {name!r}; choose one of {', '.join(EMOTIONS)} (NAME or NAME:STRENGTH)")
    if not colon:
        return name, 1.0
    try:
        value = float(strength)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise OpenVasaError(f"emotion: cannot read the strength of {text!r}; write NAME:STRENGTH, e.g. happy:0.5")
    return name, value


def _spread(move: _Move, mean: np.ndarray) -> np.ndarray:
    """Displacement (478, 3) of one move over the canonical mean shape (478, 3)."""
    dist = np.linalg.norm(mean[:, None] - mean[list(move.indices)][None], axis=-1).min(axis=1)
    weight = np.exp(-(dist**2) / (2 * move.sigma**2))
    if move.side is not None:
        lip_line = (mean[13, 1] + mean[14, 1]) / 2
        below = (mean[:, 1] - lip_line) / _MOUTH_LINE_SOFTNESS
        weight = weight / (1 + np.exp(below if move.side == "upper" else -below))
    return weight[:, None] * np.asarray(move.shift)


def emotion_template(name: str, basis: FaceBasis) -> np.ndarray:
    """Intended canonical displacement (478, 3) of a preset at strength 1."""
    if name not in _PRESETS:
        raise OpenVasaError(f"unknown emotion {name!r}; choose one of {', '.join(EMOTIONS)}")
    template = np.zeros_like(basis.mean)
    for move in _PRESETS[name]:
        template += _spread(move, basis.mean)
    return template


def _fit_template(template: np.ndarray, basis: FaceBasis) -> np.ndarray:
    """Dynamics code (K,) whose key points move as much as the template's, on average.

    Weighted least squares, with the inner-lip gap held to the template's own change: a spill-over that
    closed the lips would push them through each other on a portrait with a closed mouth.
    """
    size = np.linalg.norm(template, axis=1)
    key = size > _KEY_SHARE * size.max()
    root_weight = np.sqrt(np.repeat(np.where(key, _KEY_WEIGHT, 1.0), 3))
    y_rows = basis.dynamics_basis[1::3]
    gap_rows = np.stack([y_rows[lower] - y_rows[upper] for upper, lower in lm.MOUTH_LIP_PAIRS])
    gap_change = np.array([template[lower, 1] - template[upper, 1] for upper, lower in lm.MOUTH_LIP_PAIRS])
    a = np.concatenate([basis.dynamics_basis * root_weight[:, None], _GAP_WEIGHT * gap_rows])
    b = np.concatenate([root_weight * template.ravel(), _GAP_WEIGHT * gap_change])
    code = np.linalg.lstsq(a, b, rcond=None)[0]
    reached = np.linalg.norm((basis.dynamics_basis @ code).reshape(template.shape), axis=1)
    return code * size[key].mean() / reached[key].mean()


def emotion_offset(emotion: str | np.ndarray | None, basis: FaceBasis, strength: float = 1.0) -> np.ndarray:
    """Dynamics offset (K,) of a preset name or a raw (K,) vector, times strength; zeros for None."""
    k = basis.n_dynamics
    if emotion is None:
        return np.zeros(k)
    if isinstance(emotion, str):
        if emotion == "neutral":
            return np.zeros(k)
        return strength * _fit_template(emotion_template(emotion, basis), basis)
    vector = np.asarray(emotion, dtype=np.float64)
    if vector.shape != (k,):
        raise OpenVasaError(f"an emotion vector must have {k} values (one per dynamics code), got {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise OpenVasaError("the emotion vector has non-finite values")
    return strength * vector


def emotion_eye_openness(emotion: str | np.ndarray | None, strength: float = 1.0) -> float:
    """Factor on eye openness for a preset (wider for surprised, narrower for happy); 1 otherwise."""
    if not isinstance(emotion, str):
        return 1.0
    if emotion not in _EYE_OPENNESS:
        raise OpenVasaError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
    return max(0.0, 1.0 + strength * (_EYE_OPENNESS[emotion] - 1.0))
