import numpy as np
import pytest

from openvasa.face import landmarks as lm
from openvasa.face.geometry import euler_to_matrix, fit_similarity, matrix_to_euler
from openvasa.face.latent import (
    FaceLatent,
    from_canonical,
    mirror_latent,
    mirror_permutation,
    mirror_points,
    to_canonical,
)
from openvasa.face.track import track_frames
from openvasa.io.media import read_video

from .conftest import shared_file


def test_euler_round_trip_and_similarity_fit():
    angles = np.array([[0.3, -0.2, 0.1], [-0.5, 0.4, -0.3]])
    rot = euler_to_matrix(*angles.T)
    assert np.allclose(matrix_to_euler(rot), angles)
    src = np.random.default_rng(0).normal(size=(30, 3))
    s, r, t = fit_similarity(src, 2.5 * src @ rot[0].T + [1, 2, 3])
    assert np.isclose(s, 2.5) and np.allclose(r, rot[0]) and np.allclose(t, [1, 2, 3])


@pytest.fixture(scope="module")
def unseen_clip():
    """50 tracked frames of a person held out of the basis fit (validation identity TheresaMay)."""
    clip = read_video(shared_file("videos/real3dportrait_May_5s.mp4"), max_frames=50)
    return track_frames(clip.frames, keep_frames=False).landmarks


def test_reconstruction_error_on_unseen_person(codec, unseen_clip):
    identity = codec.identity_of(unseen_clip[0])
    latent = codec.encode(unseen_clip, identity)
    decoded = codec.decode(latent, identity)
    error = np.linalg.norm(decoded[:, :, :2] - unseen_clip[:, :, :2], axis=-1)
    face_px = np.linalg.norm(unseen_clip[:, 33, :2] - unseen_clip[:, 263, :2], axis=-1).mean()
    mouth = np.concatenate([lm.LIPS_INNER_CONTOUR, lm.LIPS_OUTER_CONTOUR])
    print(
        f"reconstruction error: mean {error.mean():.2f} px, mouth {error[:, mouth].mean():.2f} px (eye dist {face_px:.0f} px)"
    )
    assert error.mean() < 1.0
    assert error[:, mouth].mean() < 1.2
    # Decoded mouth opening follows the real one.
    assert np.corrcoef(lm.mouth_opening(decoded), lm.mouth_opening(unseen_clip))[0, 1] > 0.95


def test_portrait_identity_reproduces_portrait_exactly(codec, astronaut_portrait):
    points = astronaut_portrait.crop.landmarks
    decoded = codec.decode(astronaut_portrait.identity.reference, astronaut_portrait.identity)[0]
    assert np.abs(decoded - points).max() < 1e-3


def test_pose_and_dynamics_are_disentangled(codec, astronaut_portrait):
    identity = astronaut_portrait.identity
    ref = identity.reference
    turned = FaceLatent(ref.pose.copy(), ref.eyes, ref.dynamics)
    turned.pose[0, :3] += [0.3, -0.15, 0.1]
    turned_points = codec.decode(turned, identity)
    # Re-encoding a pose-only change gives back the same expression and eyes.
    again = codec.encode(turned_points, identity)
    assert np.allclose(again.dynamics, ref.dynamics, atol=1e-6)
    assert np.allclose(again.eyes, ref.eyes, atol=1e-6)
    assert np.allclose(again.pose[0, :3], turned.pose[0, :3], atol=1e-6)
    # And canonical <-> pixel transforms are inverse of each other.
    assert np.allclose(to_canonical(from_canonical(turned_points, ref.pose), ref.pose), turned_points)


def test_mirrored_latent_decodes_to_mirrored_landmarks(codec, unseen_clip):
    basis = codec.basis
    permutation = mirror_permutation(basis.mean)
    assert (permutation[permutation] == np.arange(len(permutation))).all()
    latent = codec.encode(unseen_clip)  # relative to the mean face
    mirrored = mirror_latent(latent, basis, width=512)
    expected = codec.encode(mirror_points(unseen_clip, 512, permutation))
    assert np.allclose(mirrored.pose, expected.pose, atol=1e-3)
    assert np.allclose(mirrored.eyes, expected.eyes, atol=1e-3)
    # The basis is fitted on mirrored clips too, so the flip is (almost) closed inside it.
    err = np.abs(mirrored.dynamics - expected.dynamics).mean() / np.abs(expected.dynamics).mean()
    print(f"relative dynamics error of the mirror map: {err:.3f}")
    assert err < 0.1
    twice = mirror_latent(mirrored, basis, width=512)
    assert np.allclose(twice.dynamics, latent.dynamics, atol=0.05 * np.abs(latent.dynamics).max())
