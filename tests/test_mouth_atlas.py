"""The learned mouth interior: mouth coordinates round-trip on a tilted face, the atlas is what fills an opened
mouth, in the face's own light (a darker exposure gives a darker interior, a darker skin does not)."""

from dataclasses import replace

import numpy as np

from openvasa.face import landmarks as lm
from openvasa.render.eyes import polygon_mask
from openvasa.render.mouth_atlas import MouthAtlas, MouthFrame, light_reference
from openvasa.render.renderer import PortraitRenderer
from tests.test_render import mouth_direction


def opened(portrait, codec, opening: float) -> np.ndarray:
    latent = portrait.identity.reference.copy()
    latent.dynamics[0] += opening * mouth_direction()
    return codec.decode(latent, portrait.identity)[0]


def test_mouth_coordinates_round_trip_on_a_tilted_face(astronaut_portrait):
    points = astronaut_portrait.crop.landmarks.copy()
    centre, angle = points[:, :2].mean(0), np.deg2rad(20)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points[:, :2] = (points[:, :2] - centre) @ turn.T + centre
    frame = MouthFrame.of(points)
    u, t = np.meshgrid(np.linspace(-0.9, 0.9, 7), np.linspace(-5, 12, 5))
    back = frame.to_mouth(*frame.to_image(u, t))
    np.testing.assert_allclose(back[0], u, atol=1e-4)
    np.testing.assert_allclose(back[1], t, atol=1e-3)
    # The corners lie on the u axis whatever the tilt.
    corners = frame.to_mouth(points[[78, 308], 0], points[[78, 308], 1])
    np.testing.assert_allclose(corners[0], [-1, 1], atol=1e-6)
    np.testing.assert_allclose(corners[1], [0, 0], atol=1e-6)


def test_the_atlas_fills_the_opened_mouth_in_the_faces_light(astronaut_portrait, codec):
    """A one-colour atlas paints the opened mouth that colour times the face's light; the same portrait at half the
    exposure gets a darker interior in proportion."""
    crop, colour = astronaut_portrait.crop, np.array([0.3, 0.2, 0.25])
    plain = np.broadcast_to(colour, (2, 8, 16, 3)).astype(np.float32)
    atlas = MouthAtlas(np.array([0.0, 0.5]), plain, plain, 0.2)
    target = opened(astronaut_portrait, codec, 0.2)
    inside = polygon_mask(crop.image.shape[:2], target[lm.LIPS_INNER_CONTOUR]) > 0.99
    means = []
    for image in (crop.image, (crop.image * 0.5).astype(np.uint8)):
        renderer = PortraitRenderer(replace(crop, image=image), atlas)
        renderer.mouth.own_interior = None  # the astronaut shows her teeth: here, only the atlas is looked at
        frame = renderer.render(target)
        expected = colour * light_reference(image, crop.landmarks)
        got = frame[inside].mean(0)
        print(f"\ninterior {got.round(1)}, atlas x light {expected.round(1)}")
        np.testing.assert_allclose(got, expected, rtol=0.12, atol=4)
        means.append(got.mean())
    assert 0.4 < means[1] / means[0] < 0.6


def test_the_fit_reads_back_what_the_renderer_draws(astronaut_portrait, codec):
    """The fitting tool's sampler and the renderer agree on mouth coordinates: strips drawn from a two-tone atlas
    (light upper, dark lower) are read back from the rendered frame as they were drawn."""
    from openvasa.tools.fit_mouth_interior import sample_strips

    crop = astronaut_portrait.crop
    upper_colour, lower_colour = np.array([1.2, 1.2, 1.3]), np.array([0.2, 0.12, 0.12])  # teeth, dark: not lip
    upper = np.broadcast_to(upper_colour, (2, 8, 16, 3)).astype(np.float32)
    lower = np.broadcast_to(lower_colour, (2, 8, 16, 3)).astype(np.float32)
    renderer = PortraitRenderer(crop, MouthAtlas(np.array([0.0, 0.5]), upper, lower, 0.2))
    renderer.mouth.own_interior = None
    target = opened(astronaut_portrait, codec, 0.25)
    frame = renderer.render(target)
    strips = sample_strips(frame, target)
    assert strips is not None
    light = light_reference(crop.image, crop.landmarks)
    middle = slice(strips[0].shape[1] // 3, 2 * strips[0].shape[1] // 3)
    for strip, colour in zip(strips, (upper_colour, lower_colour), strict=True):
        read = np.nanmedian(strip[1:4, middle].reshape(-1, 3), 0)
        print(f"\nread {read.round(1)}, drawn {(colour * light).round(1)}")
        np.testing.assert_allclose(read, colour * light, rtol=0.15, atol=6)


def test_a_mouth_ajar_keeps_its_own_dark_at_its_own_opening(astronaut_portrait):
    """A portrait whose open mouth is dark inside (no teeth showing) is drawn as itself at its own opening: the
    atlas's lighter inside only comes in as the mouth opens wider."""
    from openvasa.eval.pixels import mouth_box

    crop = astronaut_portrait.crop
    inside = polygon_mask(crop.image.shape[:2], crop.landmarks[lm.LIPS_INNER_CONTOUR]) > 0.5
    image, context = crop.image.copy(), crop.context.copy()
    image[inside] = (60, 20, 25)
    margin = (context.shape[0] - image.shape[0]) // 2
    context[margin : margin + image.shape[0], margin : margin + image.shape[1]] = image
    ajar = replace(crop, image=image, context=context)
    frame = PortraitRenderer(ajar).render(crop.landmarks.astype(np.float64))
    rows, cols = mouth_box(crop.landmarks)
    error = np.mean((frame[rows, cols].astype(float) - image[rows, cols]) ** 2)
    psnr = 10 * np.log10(255**2 / error)
    print(f"\nmouth PSNR at the portrait's own opening: {psnr:.1f} dB")
    assert psnr > 27  # 20.7 dB when the atlas replaced the dark, 29.3 dB with it kept


def test_the_lower_strips_are_shaded_under_the_upper_teeth():
    from openvasa.tools.fit_mouth_interior import LOWER_SHADE, LUMA, shaded_lower

    upper = np.full((2, 8, 16, 3), 0.3, np.float32)
    upper[1, 2] = 1.2  # a row of upper teeth
    lower = np.full((2, 8, 16, 3), 0.4, np.float32)
    lower[1, 0] = 1.8  # lower teeth brighter than them
    shaded = shaded_lower(upper, lower)
    assert np.isclose(shaded[1, 0, 0] @ LUMA, LOWER_SHADE * 1.2, rtol=1e-4)  # grey: its luma is its level
    np.testing.assert_allclose(shaded / lower, shaded[0, 0, 0, 0] / lower[0, 0, 0, 0])  # one scale: texture kept
    dim = shaded_lower(upper, lower * 0.3)
    np.testing.assert_allclose(dim, lower * 0.3)  # already in the shade: left as it is
