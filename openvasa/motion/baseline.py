"""Baseline audio-driven face motion: hand-built signal processing, no learned generator (`--motion baseline`).

Lips follow the
loudness envelope (opening) and the spectral shape (rounding) along two directions of the dynamics
basis measured on real talking videos; blinks, gaze saccades and head sway are seeded random
processes; head nods follow loudness onsets. Every deviation is stationary and centred on the
portrait's own latent, so the motion never drifts.

The mouth directions and gains are fitted on the training identities and shipped in
`openvasa/assets/baseline_mouth.npz`; refit them (after refitting the face basis) with
`python -m openvasa.tools.fit_mouth`.
"""

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from openvasa.audio.features import frame_energy_features, n_frames_for
from openvasa.errors import OpenVasaError
from openvasa.face.geometry import euler_to_matrix
from openvasa.face.latent import (
    EYE_IRIS,
    EYE_OPEN,
    POSE_ANGLES,
    POSE_SCALE,
    POSE_SHIFT,
    FaceBasis,
    FaceLatent,
    gaze_to_iris_offset,
)
from openvasa.motion.controls import MotionControls, emotion_eye_openness, emotion_offset
from openvasa.units import SAMPLE_RATE

MOUTH_FILE = "baseline_mouth.npz"

# Lip opening: fast attack, slower release, so lips snap open on a vowel and close between words.
OPEN_ATTACK_S = 0.03
OPEN_RELEASE_S = 0.08
# Rounding: voiced sound with a low spectral centroid and little second-formant energy (o, u).
ROUND_CENTROID = 0.5
ROUND_CENTROID_WIDTH = 0.15
ROUND_F2_WEIGHT = 2.0
ROUND_ATTACK_S = 0.04
ROUND_RELEASE_S = 0.1

# Blinks: about 15 a minute, never closer than BLINK_MIN_GAP_S.
BLINK_MIN_GAP_S = 1.5
BLINK_MEAN_EXTRA_GAP_S = 2.5
BLINK_DURATION_S = (0.2, 0.3)
BLINK_CLOSING_SHARE = 0.4
BLINK_DEPTH = 0.95

# Gaze saccades: hold a small offset for 1-3 s, back to centre about a third of the time.
SACCADE_HOLD_S = (1.0, 3.0)
SACCADE_YAW_DEG = 2.5
SACCADE_PITCH_DEG = 2.0
SACCADE_CENTRE_CHANCE = 0.35
SACCADE_TIME_S = 0.03

# Head sway: a sum of sinusoids per axis (yaw, pitch, roll), amplitudes falling with frequency.
SWAY_STD_DEG = (2.5, 1.8, 1.0)
SWAY_BANDS_HZ = ((0.06, 0.12), (0.12, 0.25), (0.25, 0.45), (0.45, 0.8))
SWAY_BAND_WEIGHTS = (1.0, 0.7, 0.4, 0.2)
# Nods: pitch (head down +) per unit/s of rise of the syllable-level loudness envelope; speech rises
# by about 2.7 a second at its 95th percentile, giving nods of about 1.4 degrees.
NOD_DEG_PER_RISE = 0.5
NOD_ENVELOPE_S = 0.1
NOD_ATTACK_S = 0.1
NOD_RELEASE_S = 0.25
# The head turns about the top of the neck: below and behind the rigid centroid (canonical units).
NECK_PIVOT = np.array([0.0, 0.6, 0.8])

DEFAULT_CONTROLS = MotionControls()
REST_OPENING = 0.01  # lips just apart in silence


@dataclass
class MouthModel:
    """Fitted mouth directions of the baseline. open_dir, round_dir: (K,) dynamics change per eye
    distance of inner-lip opening / of mouth-corner narrowing; open_gain, round_gain: eye distances of
    opening / narrowing at full drive; basis_check: (K,) column abs-sums of the basis it was fitted on."""

    open_dir: np.ndarray
    round_dir: np.ndarray
    open_gain: float
    round_gain: float
    basis_check: np.ndarray

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            open_dir=self.open_dir.astype(np.float32),
            round_dir=self.round_dir.astype(np.float32),
            open_gain=np.float32(self.open_gain),
            round_gain=np.float32(self.round_gain),
            basis_check=self.basis_check.astype(np.float32),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MouthModel":
        return _load_mouth(str(path or resources.files("openvasa") / "assets" / MOUTH_FILE))

    def check(self, basis: FaceBasis) -> None:
        """Raise OpenVasaError unless this model was fitted on `basis`."""
        if len(self.open_dir) != basis.n_dynamics or not np.allclose(self.basis_check, basis_check(basis), rtol=1e-3):
            raise OpenVasaError(
                f"{MOUTH_FILE} does not match the face basis; refit it with python -m openvasa.tools.fit_mouth"
            )


@lru_cache(maxsize=4)
def _load_mouth(path: str) -> MouthModel:
    with np.load(path) as z:
        return MouthModel(
            open_dir=z["open_dir"].astype(np.float64),
            round_dir=z["round_dir"].astype(np.float64),
            open_gain=float(z["open_gain"]),
            round_gain=float(z["round_gain"]),
            basis_check=z["basis_check"].astype(np.float64),
        )


def basis_check(basis: FaceBasis) -> np.ndarray:
    return np.abs(basis.dynamics_basis).sum(axis=0)


def one_pole(x: np.ndarray, fps: float, attack_s: float, release_s: float) -> np.ndarray:
    """Smooth (T,) with a one-pole filter, time constant attack_s while rising and release_s while falling."""
    up = 1 - np.exp(-1 / (fps * attack_s))
    down = 1 - np.exp(-1 / (fps * release_s))
    out = np.empty(len(x))
    state = 0.0
    for i, value in enumerate(x.tolist()):
        state += (up if value > state else down) * (value - state)
        out[i] = state
    return out


def mouth_drives(features: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Opening and rounding drives in [0, 1] from frame_energy_features. (T, 4) -> (T,), (T,)."""
    loudness, centroid, _, f2_ratio = features.T
    # Squared smoothstep: level near the speech gate barely moves the lips and loud vowels saturate; real
    # lips are open about half as wide at their median as at their loud peaks, and so is this drive.
    opening = one_pole((loudness**2 * (3 - 2 * loudness)) ** 2, fps, OPEN_ATTACK_S, OPEN_RELEASE_S)
    rounded = np.clip((ROUND_CENTROID - centroid) / ROUND_CENTROID_WIDTH, 0, 1)
    rounding = loudness * rounded * np.clip(1 - ROUND_F2_WEIGHT * f2_ratio, 0, 1)
    return opening, one_pole(rounding, fps, ROUND_ATTACK_S, ROUND_RELEASE_S)


def _blinks(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eye openness factor (T,): 1 open, 1 - BLINK_DEPTH at the bottom of a blink."""
    times = np.arange(n) / fps
    factor = np.ones(n)
    t = rng.uniform(0.3, BLINK_MIN_GAP_S + BLINK_MEAN_EXTRA_GAP_S)
    while t < n / fps:
        duration = rng.uniform(*BLINK_DURATION_S)
        # The closed moment falls on a frame, so every blink is seen fully closed.
        closed = round((t + BLINK_CLOSING_SHARE * duration) * fps) / fps
        closing, opening = BLINK_CLOSING_SHARE * duration, (1 - BLINK_CLOSING_SHARE) * duration
        u = np.where(times < closed, (times - closed) / closing, (times - closed) / opening)
        shape = np.where(np.abs(u) < 1, 0.5 + 0.5 * np.cos(np.pi * np.clip(u, -1, 1)), 0.0)
        factor = np.minimum(factor, 1 - BLINK_DEPTH * shape)
        t += BLINK_MIN_GAP_S + rng.exponential(BLINK_MEAN_EXTRA_GAP_S)
    return factor


def _saccades(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Small gaze offsets (T, 2) in degrees (yaw, pitch), held a while, starting at the centre."""
    target = np.zeros((n, 2))
    start = round(rng.uniform(*SACCADE_HOLD_S) * fps)
    while start < n:
        if rng.random() >= SACCADE_CENTRE_CHANCE:
            target[start:] = rng.uniform(-1, 1, 2) * (SACCADE_YAW_DEG, SACCADE_PITCH_DEG)
        else:
            target[start:] = 0.0
        start += max(1, round(rng.uniform(*SACCADE_HOLD_S) * fps))
    return np.stack([one_pole(x, fps, SACCADE_TIME_S, SACCADE_TIME_S) for x in target.T], axis=1)


def _sway(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean head rotation (T, 3) in degrees (yaw, pitch, roll) with std SWAY_STD_DEG."""
    times = np.arange(n) / fps
    weights = np.asarray(SWAY_BAND_WEIGHTS)
    # A sum of sinusoids of amplitudes a_i has variance sum(a_i^2) / 2.
    amplitudes = weights / np.sqrt((weights**2).sum() / 2)
    out = np.zeros((n, 3))
    for axis, std in enumerate(SWAY_STD_DEG):
        for (lo, hi), amplitude in zip(SWAY_BANDS_HZ, amplitudes, strict=True):
            freq, phase = rng.uniform(lo, hi), rng.uniform(0, 2 * np.pi)
            out[:, axis] += std * amplitude * np.sin(2 * np.pi * freq * times + phase)
    return out


def _nods(loudness: np.ndarray, fps: float) -> np.ndarray:
    """Pitch (T,) degrees: the head dips on loudness onsets; centred on 0 over the clip."""
    envelope = one_pole(loudness, fps, NOD_ENVELOPE_S, NOD_ENVELOPE_S)
    rise = np.maximum(np.diff(envelope, prepend=0.0) * fps, 0.0)
    nod = NOD_DEG_PER_RISE * one_pole(rise, fps, NOD_ATTACK_S, NOD_RELEASE_S)
    return nod - nod.mean()


def generate_baseline_motion(
    audio: np.ndarray,
    fps: float,
    reference: FaceLatent,
    basis: FaceBasis,
    controls: MotionControls = DEFAULT_CONTROLS,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    rest_opening: float = 0.0,
) -> FaceLatent:
    """Baseline (pre-diffusion) motion of a portrait speaking `audio` (S,) mono at `sample_rate`.

    reference: the portrait's own 1-frame latent, around which every motion is centred.
    rest_opening: the portrait's own inner-lip opening (eye distances). Openings are absolute, so a
    portrait photographed mid-laugh still closes its lips between words.
    Returns n_frames_for(len(audio), fps, sample_rate) frames: pose (T, 7), eyes (T, 6), dynamics (T, K).
    Deterministic for a seed; different seeds give different blinks, saccades and sway.
    """
    if not (np.isfinite(fps) and fps > 0):
        raise OpenVasaError(f"invalid frame rate {fps}")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise OpenVasaError(f"audio must be mono (1-D), got shape {audio.shape}")
    if len(reference) != 1:
        raise OpenVasaError(f"the reference latent must have one frame, got {len(reference)}")
    mouth = MouthModel.load()
    mouth.check(basis)
    rng = np.random.default_rng(seed)
    features = frame_energy_features(audio, fps, sample_rate)
    n = n_frames_for(len(audio), fps, sample_rate)
    if n == 0:
        raise OpenVasaError("the audio is shorter than one video frame")

    opening, rounding = mouth_drives(features, fps)
    dynamics = (
        reference.dynamics
        + emotion_offset(controls.emotion, basis, controls.emotion_strength)
        + (mouth.open_gain * opening - max(rest_opening - REST_OPENING, 0.0))[:, None] * mouth.open_dir
        + (mouth.round_gain * rounding)[:, None] * mouth.round_dir
    )

    eyes = np.repeat(reference.eyes, n, axis=0)
    openness = emotion_eye_openness(controls.emotion, controls.emotion_strength)
    eyes[:, EYE_OPEN] *= openness * _blinks(n, fps, rng)[:, None]
    if controls.gaze is not None:
        eyes[:, EYE_IRIS] = basis.eye_mean[EYE_IRIS] + np.tile(gaze_to_iris_offset(*controls.gaze), 2)
    saccades = _saccades(n, fps, rng)
    eyes[:, EYE_IRIS] += np.tile(gaze_to_iris_offset(saccades[:, 0], saccades[:, 1]).T, 2)

    pose = np.repeat(reference.pose, n, axis=0)
    turn = _sway(n, fps, rng)
    turn[:, 1] += _nods(features[:, 0], fps)
    pose[:, POSE_ANGLES] += np.radians(turn) * controls.motion_scale
    pose[:, POSE_SCALE] = reference.pose[0, POSE_SCALE] / controls.distance
    # Turning about the neck moves the face: the pivot stays where it is in the image.
    ref_rot = euler_to_matrix(*reference.pose[0, POSE_ANGLES])
    rot = euler_to_matrix(*pose[:, POSE_ANGLES].T)
    pose[:, POSE_SHIFT] += pose[:, POSE_SCALE, None] * ((ref_rot - rot) @ NECK_PIVOT)
    return FaceLatent(pose, eyes, dynamics)
