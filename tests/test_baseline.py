"""Tests for the baseline motion generator, its audio features and motion controls, on synthetic audio."""

import time

import numpy as np
import pytest

from openvasa.audio.features import LOOKAHEAD_S, frame_energy_features, n_frames_for
from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis, FaceLatent, FaceLatentCodec, Identity
from openvasa.motion.baseline import generate_baseline_motion
from openvasa.motion.controls import EMOTIONS, MotionControls, emotion_offset

SR = 16000
FPS = 25.0
BURST_HZ = 4.0
SPEECH_S = 2.0


def harmonic(seconds: float, f0: float = 140.0, formants: tuple[float, ...] = (700.0, 1200.0)) -> np.ndarray:
    """A voiced sound: harmonics of f0 weighted by resonances at the formant frequencies."""
    t = np.arange(round(seconds * SR)) / SR
    out = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        gain = sum(1 / (1 + ((k * f0 - f) / 90.0) ** 2) for f in formants) + 0.02
        out += gain * np.sin(2 * np.pi * k * f0 * t)
    return out / np.abs(out).max()


def envelope(t: np.ndarray) -> np.ndarray:
    """Syllable bursts at BURST_HZ for SPEECH_S seconds, silence after."""
    return np.where(t < SPEECH_S, np.maximum(np.sin(2 * np.pi * BURST_HZ * t), 0.0), 0.0)


def speech(seconds: float) -> np.ndarray:
    """Amplitude-modulated harmonic 'speech': SPEECH_S s of bursts, then silence up to `seconds`."""
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * envelope(t) * harmonic(seconds) + 1e-4 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


def talking(seconds: float) -> np.ndarray:
    """Bursts all along (2 s of speech, 0.5 s pause, repeated)."""
    t = np.arange(round(seconds * SR)) / SR
    env = np.maximum(np.sin(2 * np.pi * BURST_HZ * t), 0.0) * (t % 2.5 < 2.0)
    return (0.3 * env * harmonic(seconds)).astype(np.float32)


@pytest.fixture(scope="module")
def basis() -> FaceBasis:
    return FaceBasis.load()


@pytest.fixture(scope="module")
def identity(basis: FaceBasis) -> Identity:
    points = basis.mean * 150.0 + np.array([256.0, 240.0, 0.0])
    return FaceLatentCodec(basis).identity_of(points)


def mouth_opening(latent: FaceLatent, identity: Identity, basis: FaceBasis) -> np.ndarray:
    """(T,) inner-lip opening of the canonical shapes, eyes held at the reference so blinks do not count."""
    eyes = np.repeat(identity.reference.eyes, len(latent), axis=0)
    return lm.mouth_opening(identity.neutral + basis.expression(eyes, latent.dynamics))


def blink_count(latent: FaceLatent, reference: FaceLatent) -> int:
    closed = latent.eyes[:, 0] < 0.5 * reference.eyes[0, 0]
    return int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0])
def test_frame_count(fps: float, basis: FaceBasis, identity: Identity) -> None:
    audio = speech(3.0)
    expected = n_frames_for(len(audio), fps, SR)
    assert expected == round(3.0 * fps)
    assert frame_energy_features(audio, fps, SR).shape == (expected, 4)
    motion = generate_baseline_motion(audio, fps, identity.reference, basis)
    assert len(motion) == expected
    assert motion.pose.shape == (expected, 7) and motion.eyes.shape == (expected, 6)
    assert motion.dynamics.shape == (expected, basis.n_dynamics)
    assert np.all(np.isfinite(motion.pose)) and np.all(np.isfinite(motion.dynamics))


def test_features_silence_and_vowels() -> None:
    silence_then_u = np.concatenate([np.zeros(SR), 0.3 * harmonic(1.0, formants=(300.0, 870.0))])
    feats = frame_energy_features(silence_then_u, FPS, SR)
    assert np.all((feats >= 0) & (feats <= 1))
    assert np.abs(feats[3:20]).max() < 1e-6  # silence, away from the look-ahead into the vowel
    assert feats[30:45, 0].mean() > 0.9
    i_then_u = np.concatenate([harmonic(1.0, formants=(270.0, 2290.0, 3010.0)), harmonic(1.0, formants=(300.0, 870.0))])
    feats = frame_energy_features(0.3 * i_then_u, FPS, SR)
    spread, rounded = feats[5:20], feats[30:45]
    assert spread[:, 1].mean() > rounded[:, 1].mean() + 0.1  # centroid
    assert spread[:, 3].mean() > rounded[:, 3].mean() + 0.1  # second-formant share
    noise = np.diff(np.random.default_rng(0).standard_normal(SR), prepend=0.0)
    fricative = frame_energy_features(np.concatenate([0.3 * harmonic(1.0), 0.1 * noise]), FPS, SR)
    assert fricative[30:45, 2].mean() > 0.5 > fricative[5:20, 2].mean()


def test_mouth_follows_loudness(basis: FaceBasis, identity: Identity) -> None:
    audio = speech(3.0)
    motion = generate_baseline_motion(audio, FPS, identity.reference, basis)
    opening = mouth_opening(motion, identity, basis)
    rest = mouth_opening(identity.reference, identity, basis)[0]
    times = np.arange(len(motion)) / FPS
    speaking = times < SPEECH_S
    # The mouth leads the sound it makes.
    assert np.corrcoef(opening[speaking], envelope(times[speaking] + LOOKAHEAD_S))[0, 1] > 0.7
    assert np.abs(opening[times > SPEECH_S + 0.5] - rest).max() < 0.01
    # Loud vowels open the lips by about 0.10-0.18 eye distances.
    assert 0.10 < opening[speaking].max() - rest < 0.18


def test_blinks(basis: FaceBasis, identity: Identity) -> None:
    audio = talking(60.0)
    for seed in range(3):
        motion = generate_baseline_motion(audio, FPS, identity.reference, basis, seed=seed)
        assert 8 <= blink_count(motion, identity.reference) <= 25
        # Both eyes together, down to ~5% of the reference openness.
        np.testing.assert_allclose(
            motion.eyes[:, 0] / identity.reference.eyes[0, 0],
            motion.eyes[:, 1] / identity.reference.eyes[0, 1],
        )
        assert motion.eyes[:, 0].min() < 0.1 * identity.reference.eyes[0, 0]


def test_head_motion(basis: FaceBasis, identity: Identity) -> None:
    audio = talking(60.0)
    ref = identity.reference
    motion = generate_baseline_motion(audio, FPS, ref, basis, seed=3)
    deviation = np.degrees(motion.pose[:, :3] - ref.pose[:, :3])
    std = deviation.std(axis=0)
    assert 1.5 < std[0] < 3.5 and 1.0 < std[1] < 3.0 and 0.5 < std[2] < 1.5
    assert np.all(np.abs(deviation.mean(axis=0)) < 1.0)  # centred on the portrait's pose, no drift
    shift = motion.pose[:, 3:5] - ref.pose[:, 3:5]
    assert 0.5 < shift.std(axis=0).max() < 10.0
    still = generate_baseline_motion(audio, FPS, ref, basis, MotionControls(motion_scale=0.0), seed=3)
    np.testing.assert_allclose(still.pose, np.repeat(ref.pose, len(still), axis=0), atol=1e-9)
    assert mouth_opening(still, identity, basis).std() > 0.02
    assert blink_count(still, ref) >= 8


def test_distance(basis: FaceBasis, identity: Identity) -> None:
    ref = identity.reference
    motion = generate_baseline_motion(speech(3.0), FPS, ref, basis, MotionControls(distance=1.25))
    np.testing.assert_allclose(motion.pose[:, 6], ref.pose[0, 6] / 1.25)
    with pytest.raises(OpenVasaError):
        MotionControls(distance=0.0)


def test_gaze(basis: FaceBasis, identity: Identity) -> None:
    ref = identity.reference

    def irises(gaze: tuple[float, float] | None) -> np.ndarray:
        motion = generate_baseline_motion(speech(3.0), FPS, ref, basis, MotionControls(gaze=gaze))
        return motion.eyes[:, 2:].reshape(-1, 2, 2).mean(axis=0)  # (eye, xy)

    natural, left, right, up = irises(None), irises((-10.0, 0.0)), irises((10.0, 0.0)), irises((0.0, 10.0))
    np.testing.assert_allclose(natural, ref.eyes[0, 2:].reshape(2, 2), atol=0.02)
    assert np.all(right[:, 0] > left[:, 0] + 0.1)
    assert np.all(up[:, 1] < irises((0.0, -10.0))[:, 1] - 0.1)


def test_emotions(basis: FaceBasis, identity: Identity) -> None:
    def move(name: str) -> np.ndarray:
        return (basis.dynamics_basis @ emotion_offset(name, basis)).reshape(lm.N_LANDMARKS, 3)

    assert not np.any(emotion_offset("neutral", basis))
    happy, sad, surprised, angry = (move(name) for name in EMOTIONS[1:])
    corners = [61, 291]
    assert np.all(happy[corners, 1] < -0.02)  # corners up (y down in the canonical frame)
    assert happy[61, 0] < 0 < happy[291, 0]  # and outward
    assert np.all(sad[corners, 1] > 0.02)
    assert np.all(sad[[55, 285], 1] < -0.01)
    assert np.all(surprised[[105, 334], 1] < -0.03)
    assert np.all(angry[[55, 285], 1] > 0.02) and angry[55, 0] > 0 > angry[285, 0]
    for offset in (happy, sad, surprised, angry):
        assert 0.02 < np.linalg.norm(offset, axis=1).max() < 0.08
    np.testing.assert_allclose(emotion_offset("happy", basis, 0.5), 0.5 * emotion_offset("happy", basis))

    silent = np.zeros(SR, np.float32)
    ref = identity.reference
    motion = generate_baseline_motion(silent, FPS, ref, basis, MotionControls(emotion="happy"))
    np.testing.assert_allclose(motion.dynamics[-1], ref.dynamics[0] + emotion_offset("happy", basis), atol=1e-6)


def test_emotion_errors(basis: FaceBasis, identity: Identity) -> None:
    with pytest.raises(OpenVasaError, match="unknown emotion"):
        emotion_offset("bored", basis)
    with pytest.raises(OpenVasaError, match="unknown emotion"):
        generate_baseline_motion(speech(1.0), FPS, identity.reference, basis, MotionControls(emotion="bored"))
    with pytest.raises(OpenVasaError, match="values"):
        emotion_offset(np.zeros(3), basis)
    vector = np.zeros(basis.n_dynamics)
    vector[0] = 1.0
    np.testing.assert_allclose(emotion_offset(vector, basis, 2.0), 2 * vector)


def test_deterministic_by_seed(basis: FaceBasis, identity: Identity) -> None:
    audio = talking(10.0)
    a, b = (generate_baseline_motion(audio, FPS, identity.reference, basis, seed=7) for _ in range(2))
    c = generate_baseline_motion(audio, FPS, identity.reference, basis, seed=8)
    for x, y in ((a.pose, b.pose), (a.eyes, b.eyes), (a.dynamics, b.dynamics)):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.pose, c.pose) and not np.allclose(a.eyes, c.eyes)


def test_speed(basis: FaceBasis, identity: Identity) -> None:
    audio = talking(60.0)
    start = time.perf_counter()
    motion = generate_baseline_motion(audio, FPS, identity.reference, basis)
    assert (time.perf_counter() - start) / len(motion) < 1e-3
