"""Lip closures: the /p b m/ found in English speech, the lips shut there, and seen shut in the rendered frames."""

import numpy as np
import pytest

from openvasa.audio.phonetics import bilabial_letters, lip_closures
from openvasa.eval import metrics as m
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceLatent, mouth_opening
from openvasa.io.media import load_audio
from openvasa.motion.baseline import MouthModel
from openvasa.motion.closures import HALF_WIDTH, SHUT, close_lips
from openvasa.units import FPS
from tests.conftest import shared_file


def test_bilabials_follow_english_spelling():
    assert [i for i, _ in bilabial_letters("probably")] == [0, 3, 5]
    assert bilabial_letters("phone") == []  # ph is /f/
    assert [i for i, _ in bilabial_letters("climb,")] == [3]  # the final b is silent; punctuation dropped
    assert [i for i, _ in bilabial_letters("Summer")] == [2]  # a doubled letter is one sound
    assert bilabial_letters("Bob's") == [(0, 4), (2, 4)]


def test_real_lips_meet_where_the_closures_are_found():
    """On a real English clip of a person no model was trained on, the tracked lips are shut at the found closures
    far more often than over the clip as a whole."""
    from openvasa.eval.suite import frames_at
    from openvasa.face.track import track_frames

    video = shared_file("videos/lipreadingdl_sample_video.mp4")
    audio = load_audio(video)[: 6 * 16000]
    closures = lip_closures(audio, FPS)
    frames = list(frames_at(video, np.arange(int(6 * FPS)) / FPS))
    opening = lm.mouth_opening(track_frames(frames, keep_frames=False).landmarks)  # (T,)
    shut = opening <= np.percentile(opening, 5) + m.LIPS_MEET

    def shut_near(frames: np.ndarray) -> float:
        return float(np.mean([shut[max(f - 1, 0) : f + 2].any() for f in frames if f < len(shut)]))

    found, chance = shut_near(closures), shut_near(np.arange(len(shut)))
    print(f"\n{len(closures)} closures; lips shut near them {found:.2f}, near any frame {chance:.2f}")
    assert len(closures) >= 4
    assert found >= 0.75 and found >= chance + 0.15


@pytest.mark.parametrize(
    "clip", ["audio/dreamtalk_German1.wav", "audio/dreamtalk_japan1.wav", "audio/sonic_sing_female_rap_10s.mp3"]
)
def test_speech_whisper_cannot_read_gives_no_closures(clip):
    """Other languages and singing: a closure at a guessed place would shut the lips mid-vowel."""
    assert len(lip_closures(load_audio(shared_file(clip))[: 8 * 16000], FPS)) == 0


@pytest.fixture(scope="module")
def open_mouth(astronaut_portrait, codec):
    """30 frames of the astronaut speaking with her mouth open 0.12 eye distances wider than at rest."""
    ref = astronaut_portrait.identity.reference
    latent = FaceLatent(*(np.repeat(a, 30, 0) for a in (ref.pose, ref.eyes, ref.dynamics)))
    latent.dynamics += 0.12 * MouthModel.load().open_dir
    return latent


def test_close_lips_shuts_the_mouth_at_a_closure_and_eases_around_it(astronaut_portrait, codec, open_mouth):
    neutral = astronaut_portrait.identity.neutral
    shut = close_lips(open_mouth, np.array([15]), neutral, codec.basis)
    before, after = (mouth_opening(x, neutral, codec.basis) for x in (open_mouth, shut))
    print(f"\nopening before {before[15]:.3f}, after {np.round(after[10:21], 3)}")
    assert after[15] < SHUT + 0.005 < before[15] - 0.1
    assert after[15] < after[14] < after[13] < before[13]  # lips come together over frames
    far = np.abs(np.arange(30) - 15) > HALF_WIDTH
    assert np.allclose(after[far], before[far])
    pair = m.MotionPair(open_mouth, shut, neutral, codec.basis, np.ones(30), FPS, np.array([15]))
    assert m.bilabials_closed(pair) == 0.0  # the open mouth against a real one that closes


def test_closed_lips_are_seen_closed_in_the_rendered_frame(astronaut_portrait, codec, redetector, open_mouth):
    shut = close_lips(open_mouth, np.array([15]), astronaut_portrait.identity.neutral, codec.basis)
    seen = []
    for latent in (open_mouth, shut):
        target = codec.decode(latent[15:16], astronaut_portrait.identity)[0]
        found = redetector.landmarks(astronaut_portrait.renderer.render(target))
        assert found is not None
        seen.append(lm.mouth_opening(found))
    print(f"\nre-detected opening: open {seen[0]:.3f}, at the closure {seen[1]:.3f}")
    assert seen[1] < 0.03 < seen[0] - 0.05


def test_viseme_sheet_finds_vowels_in_words_whose_vowel_is_certain():
    from openvasa.audio.phonetics import LEAD_S, Word
    from openvasa.eval.visemes import OPEN_A, ROUNDED, vowel_frame

    words = [Word("The", 0.0, 0.2), Word("past,", 0.2, 0.6), Word("you", 1.0, 1.2)]
    assert vowel_frame(words, OPEN_A, "a", 100) == round((0.2 + 0.4 * 1.5 / 4 - LEAD_S) * FPS)
    assert vowel_frame(words, ROUNDED, "ou", 100) == round((1.0 + 0.2 * 1.5 / 3 - LEAD_S) * FPS)
    assert vowel_frame(words, ROUNDED, "ou", 20) is None  # past the clip's end
