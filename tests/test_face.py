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
    """The wide framing puts the face where the composition wants it; the default one moves it (a little) only
    so that no pixel of the frame has to be made up."""
    wide = analyzer.crop_portrait(astronaut, framing="wide")
    auto = analyzer.crop_portrait(astronaut)
    for crop in (wide, auto):
        assert crop.image.shape == (FRAME_SIZE, FRAME_SIZE, 3)
        assert crop.landmarks.shape == (478, 3)
        eyes = crop.landmarks[[33, 263], 1]
        assert abs(eyes[0] - eyes[1]) < 3  # eyes levelled
    centre = (wide.landmarks[lm.FOREHEAD_TOP, :2] + wide.landmarks[lm.CHIN, :2]) / 2
    assert abs(centre[0] - FRAME_SIZE / 2) < 8 and abs(centre[1] - FACE_CENTRE_Y_IN_FRAME * FRAME_SIZE) < 8
    assert wide.padded.any() and not auto.padded.any()
    centre = (auto.landmarks[lm.FOREHEAD_TOP, :2] + auto.landmarks[lm.CHIN, :2]) / 2
    assert np.abs(centre - [0.5, FACE_CENTRE_Y_IN_FRAME] * np.array(FRAME_SIZE)).max() < 0.12 * FRAME_SIZE + 8


TIGHT_CROPS = ("portraits/aaai22_d1.jpg", "portraits/aaai22_AdamSchiff_0.jpg")  # a painting, a photo: face-filling


@pytest.mark.parametrize("name", TIGHT_CROPS)
def test_tight_pictures_are_framed_from_their_own_pixels(analyzer, name):
    """The default framing of a tight picture is a close-up with (almost) nothing filled in; the wide one keeps
    head and shoulders and fills the rest smoothly: no bands (a stretched edge measured 3.5-4.5 grey levels per
    pixel across its bands)."""
    image = load_image(shared_file(name))
    close = analyzer.crop_portrait(image)
    print(f"\n{name}: filled in {close.padded.mean():.4f} (auto)", end="")
    assert close.padded.mean() < 0.03
    assert np.isfinite(close.landmarks).all()
    wide = analyzer.crop_portrait(image, framing="wide")
    face = wide.landmarks[list(lm.FACE_OVAL), :2].astype(int)
    assert wide.padded.mean() > 0.3 and not wide.padded[face[:, 1].clip(0, 511), face[:, 0].clip(0, 511)].any()
    grey = cv2.cvtColor(wide.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    fill = cv2.erode(wide.padded.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    across = [np.abs(cv2.Sobel(grey, cv2.CV_32F, dx, 1 - dx))[fill].mean() for dx in (0, 1)]
    print(f", wide: filled in {wide.padded.mean():.2f}, gradient in the fill {np.round(across, 2)}")
    assert max(across) < 2.0


def test_framing_choices_are_one_list(analyzer, astronaut):
    from openvasa import cli
    from openvasa.face import detect

    assert cli.FRAMINGS == detect.FRAMINGS
    with pytest.raises(OpenVasaError, match="unknown framing"):
        analyzer.crop_portrait(astronaut, framing="square")


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


def test_silencing_native_logs_from_overlapping_threads_gives_stderr_back():
    """Two threads silencing MediaPipe's native logs in overlapping windows (A in, B in, A out, B out) leave fd 2
    where it was; each saving and restoring it on its own left it on /dev/null for good, and the server's later log
    lines and tracebacks were lost."""
    import os
    import threading

    from openvasa.face.detect import _quiet_native_logs

    before = os.fstat(2)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with _quiet_native_logs():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second() -> None:
        a_in.wait(5)
        with _quiet_native_logs():
            b_in.set()
            a_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
