"""Renderer checks by re-detecting landmarks in rendered frames."""

from pathlib import Path

import numpy as np
import pytest

from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceLatent, measure_eyes, to_canonical
from openvasa.motion.baseline import MouthModel
from tests.conftest import shared_file


def mouth_direction() -> np.ndarray:
    """Dynamics change that opens the inner lips by one eye distance (fitted on real talking videos)."""
    return MouthModel.load().open_dir


def render_and_redetect(portrait, codec, redetector, latent: FaceLatent):
    target = codec.decode(latent, portrait.identity)[0]
    frame = portrait.renderer.render(target)
    found = redetector.landmarks(frame)
    assert found is not None, "no face re-detected in the rendered frame"
    return target, frame, found


def test_rendering_the_source_pose_reproduces_the_portrait(astronaut_portrait):
    crop = astronaut_portrait.crop
    frame = astronaut_portrait.renderer.render(crop.landmarks)
    mse = np.mean((frame.astype(float) - crop.image.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 32  # PSNR in dB


@pytest.mark.parametrize(
    "yaw, pitch, opening",
    [(0.0, 0.0, 0.08), (0.15, 0.0, 0.0), (-0.12, 0.08, 0.05), (0.08, -0.1, 0.12)],
)
def test_redetected_landmarks_land_on_targets(astronaut_portrait, codec, redetector, yaw, pitch, opening):
    latent = astronaut_portrait.identity.reference.copy()
    latent.pose[0, :2] += [yaw, pitch]
    latent.dynamics[0] += opening * mouth_direction()
    target, _, found = render_and_redetect(astronaut_portrait, codec, redetector, latent)
    error = np.linalg.norm(found[:, :2] - target[:, :2], axis=1)
    print(f"yaw {yaw} pitch {pitch} opening +{opening}: mean {error.mean():.2f} px, max {error.max():.1f} px")
    assert error.mean() < 3.0
    # The rendered mouth opens as asked. FaceMesh sees a little less than the geometric target (0.192 seen for
    # 0.234 asked at the widest case here, with the lower teeth shaded or not; 0.185 with the drawn dark cavity the
    # atlas replaced).
    source_open = lm.mouth_opening(astronaut_portrait.crop.landmarks)
    assert lm.mouth_opening(found) - source_open > 0.5 * (lm.mouth_opening(target) - source_open) - 0.015
    assert abs(lm.mouth_opening(found) - lm.mouth_opening(target)) < 0.065


@pytest.mark.parametrize("closure, most_open", [(0.95, 0.4), (0.5, 0.75)])
def test_blink_closes_the_eyes(astronaut_portrait, codec, redetector, closure, most_open):
    """A closed eye is re-detected closed (the lids cover it: a real blink closes to 0.1-0.4 of open), a half-closed
    one half closed."""
    latent = astronaut_portrait.identity.reference.copy()
    source_open = lm.eye_openness(astronaut_portrait.crop.landmarks)
    latent.eyes[0, :2] *= 1 - closure
    _, _, found = render_and_redetect(astronaut_portrait, codec, redetector, latent)
    print(f"\nclosure {closure}: re-detected openness {lm.eye_openness(found) / source_open} of the portrait's")
    assert (lm.eye_openness(found) < most_open * source_open).all(), (lm.eye_openness(found), source_open)
    assert (lm.eye_openness(found) > (most_open - 0.5) * source_open).all(), "no more than the target closes"


def test_a_deep_set_eye_closes_under_a_lid_in_the_light(codec, redetector):
    """Deep-set eyes rest in the brow's shadow: a closed lid taken from that band was painted dark and re-detected as
    an open eye (0.51 of open at full closure). The lid now comes forward into the light."""
    from openvasa.io.media import load_image
    from openvasa.pipeline import prepare_portrait

    portrait = prepare_portrait(load_image(shared_file("portraits/aaai22_o1.jpg")), codec=codec)
    latent = portrait.identity.reference.copy()
    source_open = lm.eye_openness(portrait.crop.landmarks)
    latent.eyes[0, :2] *= 0.05
    _, _, found = render_and_redetect(portrait, codec, redetector, latent)
    print(f"\nre-detected openness {lm.eye_openness(found) / source_open} of the portrait's")
    assert (lm.eye_openness(found) / source_open).mean() < 0.45


def test_a_lid_at_the_frame_edge_is_drawn_without_overflow(astronaut_portrait, codec):
    """A closing eye just above the frame (the head raised out of a tight crop): the lid's fade,
    measured from a line off the canvas, stays finite instead of filling the frame with garbage."""
    import warnings

    latent = astronaut_portrait.identity.reference.copy()
    latent.eyes[0, :2] *= 0.3
    target = codec.decode(latent, astronaut_portrait.identity)[0]
    target[:, 1] -= target[list(lm.RIGHT_EYE_LOWER), 1].max() + 1  # the eye just above the top row
    reference = astronaut_portrait.renderer.render(target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = astronaut_portrait.renderer.render(target)
    assert np.array_equal(frame, reference)


def test_the_lid_layer_leaves_shallow_dips_to_the_warp_and_softens_lashes_of_upscaled_pictures(
    astronaut_portrait, codec
):
    """Eyes between blinks (0.8 of open) keep the portrait's own lashes, lowered by the warp: no lid is painted,
    where a drawn lash line came and went over a third of the frames. A blink's deep frames get the whole lid. On a
    picture upscaled 3x the drawn lash line is as soft as the picture's own edges, not a crisp stroke."""
    from openvasa.render.lids import LidLayer

    portrait = astronaut_portrait
    targets = {}
    for ratio in (0.8, 0.2):
        latent = portrait.identity.reference.copy()
        latent.eyes[0, :2] *= ratio
        targets[ratio] = portrait.renderer.lids.lowered(codec.decode(latent, portrait.identity)[0])
    frame = portrait.crop.image.copy()
    portrait.renderer.lids.composite(frame, targets[0.8])
    assert np.array_equal(frame, portrait.crop.image), "a shallow dip was painted over"
    sharpness = {}
    for upscale in (1.0, 3.0):
        lids = LidLayer(portrait.crop.image, portrait.crop.landmarks, upscale)
        frame = portrait.crop.image.copy()
        lids.composite(frame, targets[0.2])
        changed = np.abs(frame.astype(int) - portrait.crop.image).sum(2) > 0
        assert changed.sum() > 200, "a deep closure paints the lid"
        rows = np.flatnonzero(changed.any(1))
        luma = frame[rows.min() : rows.max() + 1].mean(2)
        sharpness[upscale] = np.abs(np.diff(luma, axis=0)).max()
    print(f"\nsteepest vertical step in the lid: {sharpness}")
    assert sharpness[3.0] < 0.7 * sharpness[1.0]


def test_a_lid_on_the_shadowed_side_of_a_face_closes_in_its_shadow(astronaut_portrait, codec):
    """A face lit from one side: the closed lid of the eye in shadow is lit towards its own cheek, not towards the
    lit one (lit towards both cheeks, a turned head's far lid glowed in its shadow)."""
    from openvasa.render.lids import LidLayer
    from openvasa.render.mouth_atlas import LEFT_CHEEK, RIGHT_CHEEK, cheek_colour

    portrait = astronaut_portrait
    image = portrait.crop.image.astype(np.float32)
    split = int(portrait.crop.landmarks[168, 0])  # between the eyes
    image[:, :split] *= 0.45  # the right eye's side (the picture's left) in shadow
    image = image.astype(np.uint8)
    lids = LidLayer(image, portrait.crop.landmarks)
    latent = portrait.identity.reference.copy()
    latent.eyes[0, :2] *= 0.05
    target = lids.lowered(codec.decode(latent, portrait.identity)[0])
    frame = image.copy()
    lids.composite(frame, target)
    painted = np.abs(frame.astype(int) - image).sum(2) > 3
    luma = frame.mean(2)
    lid = {
        "shadow": luma[painted & (np.arange(512) < split)].mean(),
        "lit": luma[painted & (np.arange(512) >= split)].mean(),
    }
    cheek = {
        "shadow": cheek_colour(image, portrait.crop.landmarks, RIGHT_CHEEK).mean(),
        "lit": cheek_colour(image, portrait.crop.landmarks, LEFT_CHEEK).mean(),
    }
    print(f"\nclosed lid brightness {lid}, cheeks {cheek}")
    # the shadowed lid as much darker than the lit one as its cheek is (0.475 for 0.489; 0.558 when both were lit
    # towards both cheeks)
    assert abs(lid["shadow"] / lid["lit"] - cheek["shadow"] / cheek["lit"]) < 0.04


def test_gaze_moves_the_irises(astronaut_portrait, codec, redetector):
    latent = astronaut_portrait.identity.reference.copy()
    before = measure_eyes(to_canonical(astronaut_portrait.crop.landmarks[None], latent.pose))[0]
    latent.eyes[0, [2, 4]] += 0.12  # both irises to the image's right
    _, _, found = render_and_redetect(astronaut_portrait, codec, redetector, latent)
    after = measure_eyes(to_canonical(found[None], latent.pose))[0]
    assert (after[[2, 4]] - before[[2, 4]] > 0.05).all(), (before, after)


GOLDEN = Path(__file__).parent / "data" / "golden_render.npz"


def test_frames_match_the_golden_frames(astronaut_portrait):
    """Speed-ups keep the pictures: frames drawn for stored targets (head turned with the mouth open; turned the
    other way, eyes nearly shut, leaning in) match the frames the renderer drew before them."""
    golden = np.load(GOLDEN)
    for target, expected in zip(golden["targets"], golden["frames"], strict=True):
        frame = astronaut_portrait.renderer.render(target.astype(np.float64))
        diff = np.abs(frame.astype(int) - expected)
        print(f"\ngolden frame: mean |diff| {diff.mean():.4f}, 99.9th percentile {np.percentile(diff, 99.9):.0f}")
        assert diff.mean() < 0.3 and np.percentile(diff, 99.9) <= 12


def test_raster_maps_equal_the_affine_of_the_triangle_under_each_pixel():
    """The compiled rasteriser against point location: every pixel inside the mesh gets its own triangle's affine
    (no cracks along shared edges), pixels outside get the camera's, and a triangle drawn later wins."""
    from scipy.spatial import Delaunay

    from openvasa.render.raster import fill_affine_maps
    from openvasa.render.warp import _affines

    rng = np.random.default_rng(0)
    size = 64
    points = np.concatenate([rng.uniform(8, 56, (40, 2)), [[8, 8], [8, 56], [56, 8], [56, 56]]])
    mesh = Delaunay(points)
    tri_xy = points[mesh.simplices]  # (F, 3, 2)
    moved = points + rng.normal(0, 3, points.shape)
    coeffs, _ = _affines(tri_xy, moved[mesh.simplices])  # a continuous, piecewise-affine warp
    camera = np.array([[1.0, 0.0], [0.0, 1.0], [100.0, 200.0]])
    map_x, map_y = np.empty((size, size), np.float32), np.empty((size, size), np.float32)
    fill_affine_maps(tri_xy, coeffs, np.arange(len(tri_xy)), camera, map_x, map_y)

    grid_y, grid_x = np.mgrid[0:size, 0:size]
    pixels = np.stack([grid_x.ravel(), grid_y.ravel(), np.ones(size * size)], 1)
    under = mesh.find_simplex(pixels[:, :2])
    inside = under >= 0
    expected = np.einsum("pk,pkj->pj", pixels[inside], coeffs[under[inside]])
    got = np.stack([map_x.ravel(), map_y.ravel()], 1)
    assert np.abs(got[inside] - expected).max() < 1e-3
    assert np.allclose(got[~inside], pixels[~inside, :2] + [100, 200])
    assert inside.sum() > 0.5 * size * size

    # A triangle drawn last covers the ones under it.
    on_top = np.array([[[20.0, 20.0], [40.0, 20.0], [20.0, 40.0]]])
    top_coeffs = np.array([[[0.0, 0.0], [0.0, 0.0], [7.0, 9.0]]])  # every pixel -> (7, 9)
    fill_affine_maps(
        np.concatenate([tri_xy, on_top]),
        np.concatenate([coeffs, top_coeffs]),
        np.arange(len(tri_xy) + 1),
        camera,
        map_x,
        map_y,
    )
    assert map_x[25, 25] == 7 and map_y[25, 25] == 9 and map_x[45, 45] != 7


def test_triangle_maps_take_each_triangle_from_its_source():
    """Two triangles tiling a square, sourced from the same square shifted by (5, 3): every covered pixel reads
    its shifted position; all-degenerate input gives empty maps."""
    from openvasa.render.raster import triangle_maps

    square = np.array([[2.0, 2.0], [30.0, 2.0], [30.0, 20.0], [2.0, 20.0]])
    triangles = np.stack([square[[0, 1, 2]], square[[0, 2, 3]]])
    map_x, map_y = triangle_maps(triangles, triangles + [5.0, 3.0], (24, 34))
    ys, xs = np.mgrid[3:20, 3:30]
    np.testing.assert_allclose(map_x[3:20, 3:30], xs + 5, atol=1e-4)
    np.testing.assert_allclose(map_y[3:20, 3:30], ys + 3, atol=1e-4)
    flat = np.zeros((1, 3, 2))
    assert triangle_maps(flat, flat, (4, 4))[0].size == 0


def test_a_head_moving_across_the_frame_edge_does_not_fold_the_hair(astronaut_portrait):
    """A tight crop (the hair reaches the top edge) whose head rises and moves aside: the hair slides out over the
    edge as in a real video, with no sliver of a triangle squeezing many source rows into one (seen as stairs)."""
    from openvasa.render.warp import MeshWarper

    size, margin = 512, 128
    source = astronaut_portrait.crop.landmarks.astype(np.float64).copy()
    source[:, 1] += 100 - source[lm.FOREHEAD_TOP, 1]  # forehead 100 px below the top edge
    warper = MeshWarper(source, size, margin)
    target = source + [30.0, -40.0, 0.0]
    map_x, map_y = warper.backward_map(target)
    top_x, top_y = map_x[:120, 64:-64], map_y[:120, 64:-64]
    squeeze = max(np.abs(np.diff(top_x, axis=0)).max(), np.abs(np.diff(top_y, axis=0)).max())
    print(f"\nlargest source step between neighbouring output rows: {squeeze:.1f} px")
    assert squeeze < 4
    assert np.median(top_y[0] - margin) > 10, "the top edge is pinned: the hair is squeezed instead of moving out"


def test_a_video_frames_open_mouth_is_seen_as_open_as_drawn(codec, redetector):
    """A 160 px video crop (a validation person's): the atlas's lower strip, its lower teeth and lip sheen drawn
    brighter than its upper teeth, read as lip, and MediaPipe placed the lower inner lip on it (0.81 of the drawn
    opening re-detected here, 0.68-0.73 at the middle openings; in generated motion the re-detected opening followed
    the drawn one at r 0.84). Shaded as the upper lip shades them (fit_mouth_interior.shaded_lower): 0.90."""
    from openvasa.eval.suite import frames_at
    from openvasa.pipeline import prepare_portrait

    video = shared_file("videos/deepavsr_lrs2_00016.mp4")
    portrait = prepare_portrait(next(frames_at(video, np.array([0.0]))), codec=codec)
    ratios = []
    for opening in np.linspace(0.04, 0.26, 9)[3:]:
        latent = portrait.identity.reference.copy()
        latent.dynamics[0] += (opening - lm.mouth_opening(portrait.crop.landmarks)) * mouth_direction()
        target, _, found = render_and_redetect(portrait, codec, redetector, latent)
        ratios.append(lm.mouth_opening(found) / lm.mouth_opening(target))
    print(f"\nre-detected / drawn opening: {np.round(ratios, 2)}, mean {np.mean(ratios):.2f}")
    assert np.mean(ratios) > 0.86


def test_a_wide_open_mouth_on_pale_skin_shows_teeth_and_a_dark_inside(codec):
    """A pale, brightly lit portrait's widest mouth had a grey mist inside: its brightest tenth only 3.8 times its
    darkest (3.7-4.1 on twelve portraits of every skin tone; 8.6 in the real frames of the clip the atlas came
    from then). Then 4.8 (4.6-5.3) with each strip given one real frame's brightness distribution, and 7.7 since the
    atlas comes from a clip that shows its upper teeth over the dark (styletalk_Obama_clip1): the dark behind the
    teeth is dark, the cavity darker than the lips, and the teeth white but no brighter than real teeth are over
    the eye whites (1.12 times them; 1.06 with the tongue-filled clip2, 1.00 before; real teeth 1.28 at the median
    of 29 clips, measured so)."""
    from openvasa.io.media import load_image
    from openvasa.pipeline import prepare_portrait
    from openvasa.render.eyes import polygon_mask
    from openvasa.render.mouth_atlas import sclera_luma

    portrait = prepare_portrait(load_image(shared_file("portraits/hallo_6.jpg")), codec=codec)
    latent = portrait.identity.reference.copy()
    latent.dynamics[0] += (0.26 - lm.mouth_opening(portrait.crop.landmarks)) * mouth_direction()
    target = codec.decode(latent, portrait.identity)[0]
    frame = portrait.renderer.render(target)
    luma = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    inside = polygon_mask(frame.shape[:2], target[lm.LIPS_INNER_CONTOUR]) > 0.99
    lips = (polygon_mask(frame.shape[:2], target[lm.LIPS_OUTER_CONTOUR]) > 0.99) & ~(
        polygon_mask(frame.shape[:2], target[lm.LIPS_INNER_CONTOUR]) > 0.01
    )
    darkest, dark, bright = np.percentile(luma[inside], [10, 25, 90])
    whites = sclera_luma(portrait.crop.image, portrait.crop.landmarks)
    lips_luma = np.median(luma[lips])
    print(f"\nbrightest / darkest tenth {bright / darkest:.2f}, darkest quarter / lips {dark / lips_luma:.2f}")
    print(f"brightest tenth / eye whites {bright / whites:.2f}")
    assert bright / darkest > 4.3
    assert dark < 0.6 * lips_luma
    assert bright < 1.28 * whites
