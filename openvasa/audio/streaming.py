"""Audio features computed as the audio arrives, for real-time sessions, and offline by the same code.

Whisper encodes 30 s windows; a stream cannot wait for them. A stream computes features block by block
(STREAM_BLOCK frames): once the block's audio and STREAM_LOOKAHEAD frames more have arrived, Whisper encodes
the unpadded audio from WHISPER_CONTEXT_S before the block to the end of that look-ahead, and the block's
states are kept. Loudness is normalised by the levels of the audio heard so far. The `features` method of
these front-ends runs the same stream over a whole clip, so the streaming motion model trains on exactly
what a live session computes.
"""

from typing import Protocol

import numpy as np

from openvasa.audio.features import WINDOW_S, frame_stats, mono_float32, n_frames_for, normalise_stats, resample_frames
from openvasa.units import FPS, SAMPLE_RATE

# Frames per block (160 ms) by default: a chunk waits at most this long for its block to fill. Whisper's cost is
# per block (2 s of context each time), so 4-frame blocks cost half as much a frame as 2-frame ones.
STREAM_BLOCK = 4
STREAM_LOOKAHEAD = 2  # frames of audio after a block that its features wait for (the mouth leads the sound)
WHISPER_CONTEXT_S = 2.0
LEVEL_HISTORY_FRAMES = 750  # 30 s of loudness history sets the levels
SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)  # 640
MEL_HOP = 160


class BlockFeatures(Protocol):
    """Features of one block of frames from the audio around it."""

    dim: int

    def block(self, audio: np.ndarray, first_sample: int, start: int, frames: int) -> np.ndarray:
        """audio: samples from absolute index first_sample on, covering the block [start, start + frames) of frames
        plus context and look-ahead -> (frames, dim)."""
        ...


class WhisperBlocks:
    def __init__(self, frontend) -> None:  # frontend: openvasa.audio.frontends.WhisperFrontend
        self.frontend = frontend
        self.dim = frontend.dim

    def block(self, audio: np.ndarray, first_sample: int, start: int, frames: int) -> np.ndarray:
        begin = max(first_sample, start * SAMPLES_PER_FRAME - int(WHISPER_CONTEXT_S * SAMPLE_RATE))
        # An even number of 10 ms mel frames from `begin`, so 50 Hz states pair up with video frames.
        segment = audio[begin - first_sample :]
        mel = self.frontend.mel(segment)[:, : len(segment) // MEL_HOP // 2 * 2]
        states = self.frontend.encode(mel)  # (len / 320, dim) at 50 Hz from `begin`
        first = (start * SAMPLES_PER_FRAME - begin) // (2 * MEL_HOP)
        index = np.minimum(first + np.arange(2 * frames), len(states) - 1)
        return states[index].reshape(frames, 2, self.dim).mean(1)


class EnergyBlocks:
    dim = 4

    def __init__(self) -> None:
        self.history: list[float] = []  # loudness (dB) of the frames so far

    def block(self, audio: np.ndarray, first_sample: int, start: int, frames: int) -> np.ndarray:
        margin = int(WINDOW_S * SAMPLE_RATE)  # a window's worth before the block, so no window starts in padding
        begin = max(first_sample, start * SAMPLES_PER_FRAME - margin)
        times = ((start + np.arange(frames)) * SAMPLES_PER_FRAME - begin) / SAMPLE_RATE
        stats = frame_stats(audio[begin - first_sample :], times, SAMPLE_RATE)
        self.history = (self.history + stats[:, 0].tolist())[-LEVEL_HISTORY_FRAMES:]
        return normalise_stats(stats, np.array(self.history))


class AudioStream:
    """Incremental 25 fps features of a growing 16 kHz signal.

    push(audio) returns the feature rows of every block completed by that audio (possibly none); finish()
    pads the end with silence and returns the rest, so that the rows cover n_frames_for(total samples).
    """

    def __init__(
        self, parts: list[BlockFeatures], block: int = STREAM_BLOCK, lookahead: int = STREAM_LOOKAHEAD
    ) -> None:
        self.parts = parts
        self.dim = sum(p.dim for p in parts)
        self.block_frames = block
        self.lookahead = lookahead
        self.buffer = np.zeros(0, np.float32)
        self.first_sample = 0  # absolute index of buffer[0]
        self.total = 0  # samples pushed
        self.frames_done = 0

    def _needed(self) -> int:
        """Absolute sample index the next block waits for."""
        return (self.frames_done + self.block_frames + self.lookahead) * SAMPLES_PER_FRAME

    def push(self, audio: np.ndarray) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, np.asarray(audio, np.float32)])
        self.total += len(audio)
        rows = []
        while self.first_sample + len(self.buffer) >= self._needed():
            rows.append(self._next_block())
        return np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)

    def _next_block(self) -> np.ndarray:
        start, n = self.frames_done, self.block_frames
        end = self._needed()
        audio = self.buffer[: end - self.first_sample]
        row = np.hstack([p.block(audio, self.first_sample, start, n) for p in self.parts]).astype(np.float32)
        self.frames_done += n
        # Keep only what later blocks can still need: Whisper's left context.
        keep_from = max(
            0, self.frames_done * SAMPLES_PER_FRAME - int(WHISPER_CONTEXT_S * SAMPLE_RATE) - SAMPLE_RATE // 10
        )
        if keep_from > self.first_sample:
            self.buffer = self.buffer[keep_from - self.first_sample :]
            self.first_sample = keep_from
        return row

    def finish(self) -> np.ndarray:
        """The remaining frames of the audio pushed so far (its end padded with silence)."""
        wanted = n_frames_for(self.total, FPS)
        rows = []
        while self.frames_done < wanted:
            missing = self._needed() - (self.first_sample + len(self.buffer))
            if missing > 0:
                self.buffer = np.concatenate([self.buffer, np.zeros(missing, np.float32)])
            rows.append(self._next_block())
        out = np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)
        return out[: max(0, len(out) - (self.frames_done - wanted))]


class StreamingFrontend:
    """An AudioFrontend whose offline features are a replay of its stream (`stream()` starts a live one)."""

    def __init__(self, name: str, make_parts, block: int = STREAM_BLOCK) -> None:  # make_parts: () -> parts
        self.name = name
        self._make_parts = make_parts
        self.block = block
        self.dim = sum(p.dim for p in make_parts())

    def stream(self) -> AudioStream:
        return AudioStream(self._make_parts(), self.block)

    def features(self, audio: np.ndarray, fps: float) -> np.ndarray:
        audio = mono_float32(audio)
        stream = self.stream()
        feats = np.concatenate([stream.push(audio), stream.finish()])
        if fps != FPS:
            feats = resample_frames(feats, FPS, fps, n_frames_for(len(audio), fps))
        return feats.astype(np.float32)
