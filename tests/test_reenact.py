"""Video-driven reenactment on real clips: the portrait's mouth follows the driver's, and pose-only /
expression-only driving move only what they name."""

import numpy as np
import pytest

from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis, fit_pose, to_canonical
from openvasa.face.track import track_frames
from openvasa.io.media import probe_duration, read_video, write_video
from openvasa.pipeline import reenact
from openvasa.provenance.verify import verify

from .conftest import shared_file

N_FRAMES = 75


@pytest.fixture(scope="module")
def driver_video(tmp_path_factory) -> tuple:
    """First 3 s of a real clip (unseen person), written as a short mp4 with its audio."""
    clip = read_video(shared_file("videos/sadtalker_WDA_KatieHill_000.mp4"), max_frames=N_FRAMES)
    path = tmp_path_factory.mktemp("driver") / "driver.mp4"
    write_video(path, clip.frames, clip.fps, clip.audio)
    return path, clip


def redetected(frames: list[np.ndarray]) -> np.ndarray:
    return track_frames(frames, keep_frames=False).landmarks


def frontal_mouth_opening(points: np.ndarray) -> np.ndarray:
    """Mouth opening measured with head pose removed, so head nods do not read as mouth motion."""
    basis = FaceBasis.load()
    return lm.mouth_opening(to_canonical(points.astype(np.float64), fit_pose(points, basis)))


def test_reenactment_reproduces_the_mouth_opening_curve(driver_video, tmp_path):
    path, clip = driver_video
    portrait = shared_file("portraits/aaai22_d1.jpg")  # a painting
    out = reenact(portrait, path, tmp_path / "out.mp4")
    driver_mouth = lm.mouth_opening(redetected(clip.frames))
    result = read_video(out)
    output_mouth = lm.mouth_opening(redetected(result.frames))
    r = np.corrcoef(driver_mouth, output_mouth)[0, 1]
    print(f"mouth-opening correlation driver vs re-detected output: {r:.3f}")
    assert r >= 0.8
    assert result.frames[0].shape == (512, 512, 3)
    video_s, audio_s = probe_duration(out)
    assert abs(video_s - N_FRAMES / clip.fps) < 1e-6
    assert abs(audio_s - video_s) < 0.07  # AAC pads to whole 1024-sample frames
    assert verify(out).found and verify(out).tag["model"] == "reenact"


def test_pose_only_and_expression_only(driver_video, astronaut):
    path, clip = driver_video
    pose_only = redetected(reenact(astronaut, path, mode="pose"))
    expression_only = redetected(reenact(astronaut, path, mode="expression"))
    # Pose-only: the mouth keeps the portrait's shape; expression-only: the head stays put.
    pose_only_std, expression_only_std = (
        np.std(frontal_mouth_opening(pose_only)),
        np.std(frontal_mouth_opening(expression_only)),
    )
    print(f"mouth-opening std: pose-only {pose_only_std:.4f}, expression-only {expression_only_std:.4f}")
    assert pose_only_std < 0.3 * expression_only_std
    nose_motion = lambda pts: np.std(pts[:, lm.NOSE_TIP, :2], axis=0).sum()  # noqa: E731
    print(
        f"nose motion: pose-only {nose_motion(pose_only):.2f} px, expression-only {nose_motion(expression_only):.2f} px"
    )
    assert nose_motion(expression_only) < 0.5 * nose_motion(pose_only)


def test_the_driven_head_lands_where_the_real_head_is(codec):
    """Self-reenactment of a clip whose first frame has a tilted head and whose head then moves 100 px: the driven
    landmarks follow the real ones across the two framings (the tracker levels the head, the portrait's framing
    keeps the picture's tilt), within 2% of the eye distance."""
    from openvasa.face.detect import invert_affine, transform_points
    from openvasa.pipeline import drive, prepare_portrait

    clip = read_video(shared_file("videos/styletalk_feifeili_clip2_short.mp4"), max_frames=100)
    portrait = prepare_portrait(clip.frames[0], codec=codec)
    tracked = track_frames(clip.frames, keep_frames=False)
    target = codec.decode(drive(portrait, tracked, codec, same_start=True), portrait.identity)
    to_portrait = portrait.crop.to_crop @ np.vstack([invert_affine(tracked.to_crop), [0, 0, 1]])
    real = np.stack([transform_points(points, to_portrait) for points in tracked.landmarks])
    eye = np.linalg.norm(real[:, 33, :2] - real[:, 263, :2], axis=1)
    error = np.linalg.norm(target[..., :2] - real[..., :2], axis=-1).mean(1) / eye
    moved = np.linalg.norm(real[:, :, :2].mean(1) - real[0, :, :2].mean(0), axis=1).max()
    print(f"\nhead moved up to {moved:.0f} px; landmark error {error.mean():.3f} (max {error.max():.3f}) eye distances")
    assert moved > 50
    assert error.mean() < 0.02
