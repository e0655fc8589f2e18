import logging

import cv2
import numpy as np
import pytest

from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.detect import FACE_CENTRE_Y_IN_FRAME, FRAME_SIZE, FaceAnalyzer
from openvasa.io.media import load_image

from .conftest import shared_file


@pytest.fixture(scope="module")
def analyzer():
    with FaceAnalyzer() as a:
        yield a


def test_portrait_is_framed_with_478_landmarks(analyzer, astronaut):
    crop = analyzer.crop_portrait(astronaut)
    assert crop.image.shape == (FRAME_SIZE, FRAME_SIZE, 3)
    assert crop.landmarks.shape == (478, 3)
    centre = (crop.landmarks[lm.FOREHEAD_TOP, :2] + crop.landmarks[lm.CHIN, :2]) / 2
    assert abs(centre[0] - FRAME_SIZE / 2) < 8 and abs(centre[1] - FACE_CENTRE_Y_IN_FRAME * FRAME_SIZE) < 8
    eyes = crop.landmarks[[33, 263], 1]
    assert abs(eyes[0] - eyes[1]) < 3  # eyes levelled


def test_painting_and_tight_crop_are_framed(analyzer):
    for name in ("portraits/aaai22_d1.jpg", "portraits/aaai22_AdamSchiff_0.jpg"):
        crop = analyzer.crop_portrait(load_image(shared_file(name)))
        assert crop.padded.mean() < 0.4  # tight crops get padded below the chin, never over the face
        face = crop.landmarks[list(lm.FACE_OVAL), :2].astype(int)
        assert not crop.padded[face[:, 1].clip(0, 511), face[:, 0].clip(0, 511)].any()
        assert np.isfinite(crop.landmarks).all()


def test_no_face_is_a_clear_error(analyzer):
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    with pytest.raises(OpenVasaError, match="no face"):
        analyzer.crop_portrait(noise)


def test_tiny_face_is_a_clear_error(analyzer, astronaut):
    canvas = np.full((1200, 1200, 3), 200, np.uint8)
    canvas[600:680, 600:680] = cv2.resize(astronaut, (80, 80), interpolation=cv2.INTER_AREA)
    with pytest.raises(OpenVasaError, match="no face|too small"):
        analyzer.crop_portrait(canvas)


def test_cut_off_face_is_a_clear_error(analyzer, astronaut):
    with pytest.raises(OpenVasaError, match="cut off|no face|landmarks"):
        analyzer.crop_portrait(np.ascontiguousarray(astronaut[:, 220:]))


def test_several_faces_take_the_largest_with_a_warning(analyzer, astronaut, caplog):
    small = cv2.resize(astronaut, (300, 300), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 900, 3), 230, np.uint8)
    canvas[:, :512] = astronaut
    canvas[100:400, 560:860] = small
    with caplog.at_level(logging.WARNING):
        largest = analyzer.crop_portrait(canvas)
    assert "2 faces" in caplog.text
    other = analyzer.crop_portrait(canvas, face_index=1)
    # Both are framed to the same face size, but come from different places of the canvas.
    assert abs(largest.to_crop[0, 2] - other.to_crop[0, 2]) > 100
    with pytest.raises(OpenVasaError, match="out of range"):
        analyzer.crop_portrait(canvas, face_index=5)
