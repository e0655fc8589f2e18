"""Self-reenactment scores can fail: a damaged mouth scores worse in the mouth than in the face, a rendered eye that
stays open scores a shallow blink, and a real clip's own reenactment re-detects its blinks."""

import cv2
import numpy as np

from openvasa.eval.pixels import blink_depths, frame_scores, mouth_box, score_clip
from openvasa.eval.suite import frames_at
from openvasa.io.media import load_audio
from openvasa.units import FPS
from tests.conftest import shared_file


def test_a_damaged_mouth_scores_lower_in_the_mouth_than_in_the_face(astronaut_portrait):
    real, points = astronaut_portrait.crop.image, astronaut_portrait.crop.landmarks
    face, mouth, psnr = frame_scores(real, real.copy(), points)
    assert face > 0.999 and mouth > 0.999 and psnr > 60
    damaged = real.copy()
    rows, cols = mouth_box(points)
    damaged[rows, cols] = cv2.GaussianBlur(damaged[rows, cols], (15, 15), 5)
    face, mouth, psnr = frame_scores(real, damaged, points)
    print(f"\nmouth blurred: face SSIM {face:.3f}, mouth SSIM {mouth:.3f}, PSNR {psnr:.1f}")
    assert mouth < 0.8 and face > mouth + 0.1 and psnr < 40


def test_blink_depth_compares_the_deepest_frames():
    real = np.full(100, 0.3)
    real[20:24] = [0.2, 0.05, 0.03, 0.15]  # a blink closing to a tenth
    real[60:63] = [0.1, 0.06, 0.12]
    half_open = np.full(100, 0.3)
    half_open[21:25] = 0.15  # a frame late, half closed
    half_open[61:63] = 0.15
    depth_real, depth_rendered = blink_depths(real, half_open)
    assert np.isclose(depth_real, np.median([0.03, 0.06]) / 0.3) and np.isclose(depth_rendered, 0.5)
    assert np.isnan(blink_depths(np.full(50, 0.3), np.full(50, 0.3))[0]), "no blinks, no depth"


def test_self_reenactment_of_a_real_clip_keeps_its_blinks():
    """6 s of an unseen person: the reenactment re-detects as many blinks as the clip, closing nearly as far; and
    `generate` from its first frame shows blinks a viewer sees."""
    video = shared_file("videos/styletalk_feifeili_clip1.mp4")
    real = list(frames_at(video, np.arange(int(6 * FPS)) / FPS))
    scores, row = score_clip(real, load_audio(video)[: 6 * 16000])
    print(f"\n{scores}")
    assert row.shape == (256, 1024, 3)
    assert scores.blinks_per_min_real > 0
    assert abs(scores.blinks_per_min_rendered - scores.blinks_per_min_real) <= 0.25 * scores.blinks_per_min_real
    assert scores.blink_depth_rendered <= 0.4
    assert scores.face_ssim > 0.7 and scores.mouth_ssim > 0.6
    assert scores.generate_blinks_per_min_seen > 0
