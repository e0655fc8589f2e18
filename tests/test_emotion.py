"""Emotion presets show in the rendered face (re-detected), with an intensity, and the lips keep moving with the
speech under them."""

import numpy as np
import pytest
from fastapi import HTTPException

from openvasa.errors import OpenVasaError
from openvasa.eval.expression import brow_raise, corner_lift, expression_summary, eye_openness
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis, mouth_opening
from openvasa.io.media import load_audio
from openvasa.motion.controls import MotionControls, emotion_template
from openvasa.motion.generator import load_generator
from openvasa.pipeline import render_latents
from openvasa.stream.state import parse_controls
from openvasa.units import FPS


def test_expression_measures_are_in_the_faces_own_frame() -> None:
    """Measured on the canonical face and on the same face turned, scaled and moved in the image: the same values;
    the happy template lifts the corners by what it asks (0.045 eye distances), the sad one lowers them."""
    basis = FaceBasis.load()
    face = basis.mean[:, :2]
    angle = np.radians(20)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = 180 * face @ turn.T + [250, 300]
    for measure in (corner_lift, brow_raise, eye_openness):
        assert measure(placed) == pytest.approx(measure(face), abs=1e-9)
    happy = corner_lift(basis.mean + emotion_template("happy", basis)) - corner_lift(basis.mean)
    sad = corner_lift(basis.mean + emotion_template("sad", basis)) - corner_lift(basis.mean)
    assert happy == pytest.approx(0.045, abs=2e-3) and sad == pytest.approx(-0.035, abs=2e-3)
    nan_frame = np.full_like(basis.mean, np.nan)
    assert expression_summary(np.stack([basis.mean, nan_frame]))["corner_lift"] == pytest.approx(
        corner_lift(basis.mean)
    )


def test_emotion_intensity_is_read_as_typed() -> None:
    """NAME:STRENGTH (the CLI's --emotion happy:0.5, the server's emotion=happy:0.5) sets the intensity, times
    --emotion-strength; another name or an unreadable strength is refused with the choices."""
    assert MotionControls.from_text({"emotion": "happy:0.5"}) == MotionControls(emotion="happy", emotion_strength=0.5)
    assert MotionControls(emotion="sad: 2", emotion_strength=0.5) == MotionControls(emotion="sad")
    assert MotionControls.from_text({"emotion": "happy:0.5", "emotion_strength": "2"}).emotion_strength == 1.0
    assert MotionControls.from_text({"emotion": "surprised"}).emotion_strength == 1.0
    for bad, message in (("bored", "unknown emotion 'bored'; choose one of neutral"), ("happy:lots", "NAME:STRENGTH")):
        with pytest.raises(OpenVasaError, match=message):
            MotionControls.from_text({"emotion": bad})
    with pytest.raises(OpenVasaError, match="strength of 'happy:inf'"):
        MotionControls(emotion="happy:inf")
    assert parse_controls({"emotion": "angry:0.3"}) == MotionControls(emotion="angry", emotion_strength=0.3)
    for bad in ("bored", "1,2,3"):
        with pytest.raises(HTTPException) as refused:
            parse_controls({"emotion": bad})
        assert refused.value.status_code == 400 and "neutral, happy" in refused.value.detail


def test_emotions_show_in_the_rendered_face_and_the_lips_still_follow_speech(
    astronaut_portrait, codec, redetector, spoken
) -> None:
    """Rendered and re-detected: happy and sad mouth corners are at least 0.04 outer-eye distances apart (the
    presets ask for 0.08; given to the model as a condition only, the emotion came out 0.0005 apart), sad raises
    the inner brows, happy narrows the eyes, and the mouth opens and shuts as it does under neutral (generated, and seen)."""
    speech = load_audio(spoken)
    generator, identity = load_generator(), astronaut_portrait.identity
    seen, generated = {}, {}
    for emotion in ("neutral", "happy", "sad"):
        latent = generator.generate(
            speech, FPS, identity.reference, codec.basis, MotionControls(emotion=emotion, motion_scale=0.0), seed=0,
            rest_opening=identity.rest_opening(codec.basis),
        )  # fmt: skip
        frames = render_latents(astronaut_portrait, latent[::2], codec)
        points = [redetector.landmarks(frame) for frame in frames]
        assert all(p is not None for p in points), f"the face was lost under {emotion}"
        seen[emotion] = np.stack(points)
        generated[emotion] = mouth_opening(latent, identity.neutral, codec.basis)
    lift = {e: corner_lift(p).mean() for e, p in seen.items()}
    print({e: round(v, 4) for e, v in lift.items()})
    assert lift["happy"] - lift["sad"] >= 0.04
    assert lift["happy"] > lift["neutral"] + 0.02 and lift["sad"] < lift["neutral"] - 0.02
    assert brow_raise(seen["sad"]).mean() > brow_raise(seen["happy"]).mean() + 0.01
    assert eye_openness(seen["happy"]).mean() < eye_openness(seen["neutral"]).mean() - 0.01
    mouth = {e: lm.mouth_opening(p) for e, p in seen.items()}
    assert np.ptp(generated["neutral"]) > 0.04 and np.ptp(mouth["neutral"]) > 0.04  # the lips move: something to follow
    for emotion in ("happy", "sad"):
        same = np.corrcoef(generated[emotion], generated["neutral"])[0, 1]
        r = np.corrcoef(mouth[emotion], mouth["neutral"])[0, 1]
        print(f"mouth opening, {emotion} vs neutral: generated r = {same:.3f}, re-detected r = {r:.3f}")
        # The generated lips are neutral's, and re-detected they agree at 0.95-0.98 with the head held still (its
        # turns move the opening seen in the picture). On a synthetic voice's 0.03-wide openings, the smile's
        # re-detected opening followed at only 0.67-0.73: FaceMesh's reading of small openings on a smiling mouth
        # moved with how the narrowed eyes were drawn.
        assert same > 0.95 and r > 0.85
