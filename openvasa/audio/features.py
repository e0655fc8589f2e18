"""Per-video-frame speech features: loudness and a few spectral shape descriptors.

Each video frame t gets the features of a short window centred at t / fps + LOOKAHEAD_S: the mouth
starts to move about two frames before the sound it makes, so a frame shows the sound slightly ahead.
"""

import numpy as np

from openvasa.units import SAMPLE_RATE

LOOKAHEAD_S = 0.08
WINDOW_S = 0.05
N_FFT = 1024
# Loudness is mapped to [0, 1] between a per-clip silence gate and the clip's loud-speech level.
LOUD_PERCENTILE = 95.0
FLOOR_PERCENTILE = 5.0
MIN_RANGE_DB = 12.0
MAX_RANGE_DB = 40.0
GATE_FRACTION = 0.25  # of the way from the noise floor to loud speech
SILENCE_DB = -100.0
# Below this RMS level (dBFS) a frame is silence whatever the clip's own levels are.
ABSOLUTE_GATE_DB = -75.0
# Spectral centroid range (Hz) mapped to [0, 1] on a log scale: rounded vowels low, fricatives high.
CENTROID_RANGE_HZ = (300.0, 5000.0)
CHUNK_FRAMES = 2048
FEATURE_NAMES = ("loudness", "centroid", "high_ratio", "f2_ratio")


def n_frames_for(audio_len_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Number of video frames that cover `audio_len_samples` of audio (the one rule used everywhere)."""
    return int(round(audio_len_samples / sample_rate * fps))


def _band_energy(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)


def _window_stats(frames: np.ndarray, sample_rate: int) -> np.ndarray:
    """(N, W) audio windows -> (N, 4): RMS dB, centroid Hz, energy share above 4 kHz, F2-band share."""
    window = np.hanning(frames.shape[1])
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean((frames * window) ** 2, axis=1) / np.mean(window**2))
    db = np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), SILENCE_DB)
    # Pre-emphasis flattens the voice's spectral tilt, so formants rather than the pitch carry the shape.
    tilted = np.diff(frames, axis=1, prepend=frames[:, :1]) * window
    spectrum = np.fft.rfft(tilted, n=N_FFT, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    band = (freqs >= 100) & (freqs < 8000)
    total = power[:, band].sum(axis=1) + 1e-20
    centroid_hz = (power[:, band] * freqs[band]).sum(axis=1) / total
    high_ratio = _band_energy(power, freqs, 4000, 8000) / total
    f2_ratio = _band_energy(power, freqs, 1500, 3500) / (_band_energy(power, freqs, 100, 4000) + 1e-20)
    return np.stack([db, centroid_hz, high_ratio, f2_ratio], axis=1)


def frame_energy_features(audio: np.ndarray, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech features of each video frame. audio: (S,) mono float -> (n_frames, 4), all in [0, 1].

    Columns (FEATURE_NAMES):
      loudness: log RMS normalised per clip with robust percentiles (loud speech ~1), 0 below a speech
        gate, so quiet and loud recordings and their pauses look alike;
      centroid: log spectral centroid of 100 Hz - 8 kHz, low for rounded vowels (o, u), mid for spread
        vowels (i, e), high for fricatives (s, f, sh);
      high_ratio: share of energy above 4 kHz (fricatives);
      f2_ratio: share of 0.1-4 kHz energy in 1.5-3.5 kHz (the second formant of spread vowels).
    The spectral columns are multiplied by the speech gate, so silence is 0 in every column.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    n_frames = n_frames_for(len(audio), fps, sample_rate)
    if n_frames == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    stats = frame_stats(audio, np.arange(n_frames) / fps, sample_rate)
    return normalise_stats(stats, stats[:, 0])


def frame_stats(audio: np.ndarray, times: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N, 4) raw statistics (RMS dB, centroid Hz, high and F2 shares) of the windows centred LOOKAHEAD_S after
    each time (seconds from the start of `audio`); audio past the end counts as silence."""
    win = min(N_FFT, int(round(WINDOW_S * sample_rate)))
    centres = np.round((times + LOOKAHEAD_S) * sample_rate).astype(np.int64)
    padded = np.concatenate([np.zeros(win // 2), np.asarray(audio, np.float64), np.zeros(win)])
    offsets = np.arange(win)[None]
    # In chunks, so ten minutes of audio never hold all windows and spectra at once.
    return np.concatenate(
        [
            _window_stats(padded[np.minimum(c[:, None] + offsets, len(padded) - 1)], sample_rate)
            for c in np.array_split(centres, max(1, len(centres) // CHUNK_FRAMES))
        ]
    )


def normalise_stats(stats: np.ndarray, reference_db: np.ndarray) -> np.ndarray:
    """Raw statistics (N, 4) -> features (N, 4) in [0, 1], loudness relative to the levels of reference_db (the
    whole clip offline; the audio heard so far in a stream)."""
    db, centroid_hz, high_ratio, f2_ratio = stats.T
    loud_db = np.percentile(reference_db, LOUD_PERCENTILE)
    floor_db = np.percentile(reference_db, FLOOR_PERCENTILE)
    span = np.clip(loud_db - floor_db, MIN_RANGE_DB / (1 - GATE_FRACTION), MAX_RANGE_DB / (1 - GATE_FRACTION))
    gate_db = max(loud_db - (1 - GATE_FRACTION) * span, ABSOLUTE_GATE_DB)
    loudness = np.clip((db - gate_db) / max(loud_db - gate_db, 1e-6), 0.0, 1.0)
    gate = (loudness > 0).astype(np.float64)
    lo, hi = np.log(CENTROID_RANGE_HZ)
    centroid = np.clip((np.log(np.maximum(centroid_hz, 1.0)) - lo) / (hi - lo), 0.0, 1.0)
    return np.stack([loudness, centroid * gate, high_ratio * gate, f2_ratio * gate], axis=1)


def resample_frames(x: np.ndarray, src_fps: float, dst_fps: float, n_out: int) -> np.ndarray:
    """Linearly resample per-frame values between frame rates, frame centres aligned.

    x: (T, ...) at src_fps -> (n_out, ...) at dst_fps; beyond the ends the edge frames are held.
    """
    if len(x) == 0:
        raise ValueError("cannot resample an empty sequence")
    pos = np.clip((np.arange(n_out) + 0.5) * src_fps / dst_fps - 0.5, 0, len(x) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(x) - 1)
    frac = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[lo] * (1 - frac) + x[hi] * frac


def mono_float32(audio: np.ndarray) -> np.ndarray:
    """Audio as a 1-D float32 array; anything else is refused."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    return audio
