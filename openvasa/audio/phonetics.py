"""Where the lips must meet, read from the speech: the bilabials /p b m/.

The motion model's mouth follows the loudness of the voice more than what is said, and a viewer sees a /p/, /b/
or /m/ spoken through open lips at once. Offline the whole recording is known, so Whisper tiny.en (the same
package-shipped weights as the audio features) transcribes it with word timings, and English spelling places the
bilabials inside each word: p (not in "ph"), b (not the silent one of a final "mb", as in "climb") and m, a
doubled letter counted once. Each is then moved to the quietest audio frame near it: the lips are shut in a
stop's silent closure and hum through an /m/, so the quiet frame is where they meet.

Segments Whisper reads without confidence (speech in another language, singing) give no cues: a cue at a wrong
time would close the lips in the middle of a vowel. Live sessions do not use this (the words are not known yet).
"""

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from openvasa.audio.features import frame_energy_features
from openvasa.audio.frontends import require_whisper, whisper_tiny_dir
from openvasa.units import SAMPLE_RATE

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

# Segments Whisper transcribes with a lower mean token log-probability are skipped: English speech reads at -0.2
# to -0.45 on the shared clips, the German newsreader at -0.9 to -1.35 (transcribed as English nonsense).
MIN_LOGPROB = -0.7
MAX_NO_SPEECH = 0.6  # segments Whisper itself finds more likely silent than speech give no cues either
# Whisper's word times run late: on the training clips the real lips met 0.12-0.16 s before a bilabial's place
# in its word as timed (the mean mouth opening around the guesses is lowest there; 0.64 of the guesses then find
# the lips shut within a frame, 0.43 without the shift).
LEAD_S = 0.14
SNAP_FRAMES = 1  # the quietest frame within this many frames of the (shifted) guess is the closure


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds
    end: float


@cache
def _whisper() -> "WhisperModel":
    """Whisper tiny.en with its decoder (faster-whisper; the features use the encoder alone)."""
    model = require_whisper("faster_whisper").WhisperModel
    return model(str(whisper_tiny_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(audio: np.ndarray) -> list[Word]:
    """Words with their times in 16 kHz mono speech (S,) float32, from the segments read with confidence."""
    # One greedy pass (temperature 0, no fallback): the fallbacks re-decode the segments it cannot read, which are
    # dropped anyway, and took 6 s for 20 s of German against 1 s in one pass; English reads the same.
    segments, _ = _whisper().transcribe(
        np.asarray(audio, np.float32),
        language="en",
        word_timestamps=True,
        beam_size=1,
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return [
        Word(w.word.strip(), w.start, w.end)
        for s in segments
        if s.avg_logprob >= MIN_LOGPROB and s.no_speech_prob <= MAX_NO_SPEECH
        for w in s.words or []
    ]


def bilabial_letters(word: str) -> list[tuple[int, int]]:
    """(index, letter count) of each bilabial in a word's letters (punctuation dropped), by English spelling."""
    letters = re.sub(r"[^a-z]", "", word.lower())
    found = []
    for i, letter in enumerate(letters):
        if letter not in "pbm" or (i > 0 and letters[i - 1] == letter):
            continue
        if letter == "p" and letters[i + 1 : i + 2] == "h":
            continue
        if letter == "b" and i == len(letters) - 1 and letters[i - 1 : i] == "m":
            continue
        found.append((i, len(letters)))
    return found


def letter_time(word: Word, index: int, count: int) -> float:
    """Seconds at which the mouth makes letter `index` of a word's `count` letters: its share of the word's timing,
    LEAD_S earlier."""
    return word.start + (word.end - word.start) * (index + 0.5) / count - LEAD_S


def bilabial_frames(words: list[Word], loudness: np.ndarray, fps: float) -> np.ndarray:
    """(N,) sorted distinct frame indices where the lips meet; loudness: (T,) per video frame."""
    frames = set()
    for word in words:
        for index, count in bilabial_letters(word.text):
            centre = int(round(letter_time(word, index, count) * fps))
            low, high = max(centre - SNAP_FRAMES, 0), min(centre + SNAP_FRAMES + 1, len(loudness))
            if low < high:
                frames.add(low + int(np.argmin(loudness[low:high])))
    return np.array(sorted(frames), dtype=np.int64)


def lip_closures(audio: np.ndarray, fps: float) -> np.ndarray:
    """Frame indices (at fps) where the lips meet in 16 kHz speech audio (S,)."""
    loudness = frame_energy_features(audio, fps, SAMPLE_RATE)[:, 0]
    return bilabial_frames(transcribe(audio), loudness, fps)
