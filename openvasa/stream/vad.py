"""End-of-speech detection for live sessions: Silero VAD (the `silero-vad` package ships its ONNX model, so
nothing is downloaded), with hysteresis so that the short pauses inside a sentence do not end it."""

import copy
from functools import cache

import numpy as np
import torch

from openvasa.units import SAMPLE_RATE

CHUNK = 512  # samples per VAD decision (32 ms), as the model expects at 16 kHz
THRESHOLD = 0.5
END_AFTER_S = 0.35  # this much non-speech ends an utterance


@cache
def _model():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


class SpeechDetector:
    """Push 16 kHz audio as it arrives; get ("speech_start" | "speech_end", seconds into the stream) events."""

    def __init__(self) -> None:
        # A shallow copy: the ONNX session (thread-safe, the costly part) is shared, the recurrent state is this
        # detector's own, so that sessions running side by side do not feed each other's audio into it.
        self.model = copy.copy(_model())
        self.model.reset_states()
        self.pending = np.zeros(0, np.float32)
        self.position = 0  # samples decided so far
        self.speaking = False
        self.quiet = 0  # samples of non-speech since the last speech

    def push(self, audio: np.ndarray) -> list[tuple[str, float]]:
        self.pending = np.concatenate([self.pending, np.asarray(audio, np.float32)])
        events = []
        while len(self.pending) >= CHUNK:
            chunk, self.pending = self.pending[:CHUNK], self.pending[CHUNK:]
            speech = float(self.model(torch.from_numpy(chunk), SAMPLE_RATE)) >= THRESHOLD
            if speech and not self.speaking:
                self.speaking = True
                events.append(("speech_start", self.position / SAMPLE_RATE))
            self.quiet = 0 if speech else self.quiet + CHUNK
            self.position += CHUNK
            if self.speaking and self.quiet >= END_AFTER_S * SAMPLE_RATE:
                self.speaking = False
                events.append(("speech_end", (self.position - self.quiet) / SAMPLE_RATE))
        return events
