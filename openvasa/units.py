"""Units every stage shares, each defined once: the audio rate, the frame rate, and int16 <-> float audio."""

import numpy as np

SAMPLE_RATE = 16_000  # Hz: every audio path (front-ends, shards, live sessions) runs at this rate
FPS = 25.0  # frames a second of the motion model, live sessions, training shards and the evaluation
PCM_SCALE = 32768.0  # int16 full scale: float audio in [-1, 1) <-> int16 PCM


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 PCM (little-endian), the exact inverse of `from_pcm16`: a live client gets
    back the very samples it sent, and a shard's audio reads back as it was written."""
    return np.clip(np.round(np.asarray(audio) * PCM_SCALE), -32768, 32767).astype("<i2")


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 samples in [-1, 1)."""
    return np.asarray(pcm).astype(np.float32) / np.float32(PCM_SCALE)
