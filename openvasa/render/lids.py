"""Upper eyelids as their own layer. The warp alone closes an eye by squeezing it: the lash line and the skin
above it are stretched down over the eye, which reads as a squint or a smear (re-detected, the rendered eye
stayed 0.3-0.7 as open as at rest at the deepest point of a blink). Here, where the target's upper lid has come
down from where it rests, the band it swept over is painted with the portrait's own lid skin (the band above its
lash line, stretched to fit), and the portrait's lash colour is drawn along the lid's new edge: the eye is
covered from above, not squashed. The painted lid also covers the portrait's own lash line, fades in from the
crease, and is lit towards its edge as a lid bulging into the light: taken as it is from a deep-set eye's shadowed
band, a closed lid read as an open eye.
"""

import cv2
import numpy as np

from openvasa.face import landmarks as lm
from openvasa.render.eyes import polygon_mask
from openvasa.render.mouth_atlas import LEFT_CHEEK, RIGHT_CHEEK, cheek_colour
from openvasa.render.raster import triangle_maps

# (upper lid, lower lid, corners) per eye; the lid tuples run corner to corner, index i of one facing index i of
# the other.
LIDS = (
    (lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, lm.RIGHT_EYE_CORNERS),
    (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, lm.LEFT_EYE_CORNERS),
)
# The cheek under each eye: a closing lid is lit towards its own side's light, so the eye on a face's shadowed side
# stays in the shadow (lit towards both cheeks, a turned head's far lid glowed orange in its shadow).
CHEEK_UNDER = (RIGHT_CHEEK, LEFT_CHEEK)
# The lid skin is taken from this band above the portrait's lash line, in units of the eye's local opening: below
# its low edge are the lashes, above its high edge the crease and the brow.
BAND_LOW, BAND_HIGH = 0.25, 0.9
# The layer fades in with the lid's travel (a share of the resting opening, overshoot included): none below
# MIN_CLOSURE, all of it from FULL_CLOSURE. A lid drawn over the shallow dips that eyes make between blinks (a third
# of the frames) replaced the portrait's lashes with a drawn line, and that line came and went as the eye crossed the
# threshold; there the warp's lowered lashes read right (a squint, sleepy or looking down), while a blink's deep
# frames (0.44 and 0.16 of open) get the whole lid.
MIN_CLOSURE, FULL_CLOSURE = 0.3, 0.6
LASH_WIDTH = 0.035  # of the eye's width
# An upscaled picture has no line sharper than its own pixels: the drawn lash line is blurred by what bilinear
# upscaling spreads a source pixel over (sigma 0.41 of the scale) beyond the line's own antialiasing (0.4 px). A
# crisp line over a 160 px video frame read as eyeliner drawn on the picture.
UPSCALE_SPREAD, LINE_SPREAD = 0.41, 0.4
SKIN_SOFTENING = 0.04  # Gaussian sigma of the lid skin, of the eye's width
RIM_FADE = 0.04  # the lid fades in over this share of the eye's width from its rim
# A lid asked to close to openness r (of the portrait's) is drawn at r - OVERSHOOT * (1 - r): drawn at r, a half
# closed eye was re-detected at 0.65 and a closed one at 0.21, the lid's soft edge and lashes reading as open eye.
OVERSHOOT = 0.3
# The painted lid reaches this share of the resting opening above the resting lid line, so the portrait's own lash
# line (and eyeliner) there is covered: left showing, a closed eye kept its open outline.
COVER = 0.5
# Deep-set eyes rest in the brow's shadow, and a lid taken from there closed as a dark patch that reads as an open
# eye; a closing lid comes forward into the light. Its tone is pulled this share of the way to the cheeks' where
# the band is darker (all the way turned lids into glowing domes).
LIGHTEN = 0.5
TEXTURE = 0.5  # share of the band's own texture kept on the lid
TOP_FADE = 0.4  # share of the painted lid's height, from its top, over which it fades in


class LidLayer:
    """Built from the portrait and its landmarks (S, S, 3) and (478, 3); upscale: the portrait's pixels per pixel
    of the picture it was framed from (FaceCrop.to_crop's scale)."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, upscale: float = 1.0) -> None:
        self.openness = lm.eye_openness(landmarks)  # (2,) the portrait's: its lids at rest
        self.lash_blur = float(np.sqrt(max((UPSCALE_SPREAD * upscale) ** 2 - LINE_SPREAD**2, 0.0)))
        # The lid is sampled from a softened copy: a closed lid is smooth, and the band's creases and lashes,
        # stretched over it, read as stripes or as an eye still open.
        eye_width = np.linalg.norm(landmarks[lm.RIGHT_EYE_CORNERS[0], :2] - landmarks[lm.RIGHT_EYE_CORNERS[1], :2])
        self.image = cv2.GaussianBlur(image, (0, 0), SKIN_SOFTENING * eye_width)
        self.eyes = []
        for (upper, lower, corners), cheek in zip(LIDS, CHEEK_UNDER, strict=True):
            cheeks = cheek_colour(image, landmarks, cheek)
            top, bottom = landmarks[list(upper), :2], landmarks[list(lower), :2]
            opening = np.linalg.norm(top - bottom, axis=1)  # (9,) 0 at the corners
            axis = landmarks[corners[1], :2] - landmarks[corners[0], :2]
            up = np.array([axis[1], -axis[0]]) / np.linalg.norm(axis)
            up = up if up[1] < 0 else -up  # towards the brow
            band_low = top + BAND_LOW * opening[:, None] * up
            band_high = top + BAND_HIGH * opening[:, None] * up
            # The lash line: the darker half of the pixels along the upper lid.
            samples = _sample(image, np.linspace(top[:-1], top[1:], 5).reshape(-1, 2))  # the sharp picture
            lash = np.percentile(samples, 25, axis=0)
            band = _sample(self.image, np.linspace(band_low, band_high, 5).reshape(-1, 2)).mean(0)
            light = LIGHTEN * np.maximum(cheeks - band, 0)
            # The lid's rest above the lower lid, and the eye's axis, to place the resting lid in any pose.
            self.eyes.append((band_low, band_high, opening, (lash, band, light), top - bottom, axis))

    def lowered(self, target: np.ndarray) -> np.ndarray:
        """The target landmarks (478, 3) with each closing upper lid brought down by OVERSHOOT (a copy)."""
        ratio = lm.eye_openness(target) / np.maximum(self.openness, 1e-6)
        out = target.copy()
        for (upper, lower, _), r in zip(LIDS, ratio, strict=True):
            if 0 < r < 1:
                scale = max(r - OVERSHOOT * (1 - r), 0.0) / r
                out[list(upper), :2] = target[list(lower), :2] + scale * (
                    target[list(upper), :2] - target[list(lower), :2]
                )
        return out

    def composite(self, frame: np.ndarray, target: np.ndarray) -> None:
        """Draw the lids into `frame` (in place) where the target's upper lids (478, 3 landmarks of the frame) have
        come down from the portrait's."""
        for (upper, lower, corners), eye in zip(LIDS, self.eyes, strict=True):
            band_low, band_high, opening, colours, rest_opening, src_axis = eye
            lid, bottom = target[list(upper), :2], target[list(lower), :2]
            # Where the upper lid would rest in this pose: the portrait's opening above the target's lower lid,
            # turned and scaled as the eye's corners are.
            dst_axis = target[corners[1], :2] - target[corners[0], :2]
            turn = _similarity(src_axis, dst_axis)
            resting = bottom + rest_opening @ turn.T
            travel = np.linalg.norm(resting - lid, axis=1)
            closure = travel[1:-1].mean() / max(opening[1:-1].mean() * np.linalg.norm(turn[0]), 1e-6)
            strength = float(_smoothstep((closure - MIN_CLOSURE) / (FULL_CLOSURE - MIN_CLOSURE)))
            if strength <= 0:
                continue
            covered = resting + COVER * (rest_opening @ turn.T)
            self._paint(frame, covered, lid, band_high, band_low, colours, np.linalg.norm(dst_axis), strength)

    def _paint(
        self,
        frame: np.ndarray,
        top: np.ndarray,
        lid: np.ndarray,
        band_high: np.ndarray,
        band_low: np.ndarray,
        colours: tuple[np.ndarray, np.ndarray, np.ndarray],
        eye_width: float,
        strength: float,
    ) -> None:
        """Map the skin band (band_high above band_low) onto the painted band (top, above the resting lid line,
        down to the lid), `strength` (0-1] of the way over the frame. colours: the lash colour, the band's tone and
        the light added down the lid."""
        lash, band, light = colours
        h, w = frame.shape[:2]
        polygon = np.concatenate([top, lid[::-1]])
        pad = int(np.ceil(eye_width * LASH_WIDTH + 3 * self.lash_blur)) + 2
        x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + pad + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            return
        offset = np.array([x0, y0], np.float64)
        triangles, sources = [], []
        for i in range(len(lid) - 1):
            quad = (top[i], top[i + 1], lid[i + 1], lid[i])
            skin = (band_high[i], band_high[i + 1], band_low[i + 1], band_low[i])
            for a, b, c in ((0, 1, 2), (0, 2, 3)):
                triangles.append([quad[a], quad[b], quad[c]])
                sources.append([skin[a], skin[b], skin[c]])
        size = (y1 - y0, x1 - x0)
        map_x, map_y = triangle_maps(np.array(triangles) - offset, np.array(sources), size)
        if not map_x.size:
            return
        skin = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        from_top, from_lid = (_distance_to(line - offset, size) for line in (top, lid))
        depth = (from_top / np.maximum(from_top + from_lid, 1e-6))[..., None]  # 0 at the top, 1 at the lid's edge
        # The band's texture, softened, over its tone lightened down the lid as the lid bulges into the light (the
        # texture multiplied up instead made a shadowed band's specks glow).
        skin = band + light * _smoothstep(depth) + TEXTURE * (skin.astype(np.float32) - band)
        # Faded in from the rim over a few pixels (a hard rim drew the eye's outline around the closed lid), and
        # from the top over the upper part of the lid, into the portrait's crease.
        inside = (polygon_mask(size, polygon, offset) > 0.5).astype(np.uint8)
        rim = np.clip(cv2.distanceTransform(inside, cv2.DIST_L2, 3) / max(1.5, RIM_FADE * eye_width), 0, 1)
        alpha = np.minimum(rim, _smoothstep(depth[..., 0] / TOP_FADE))
        # The lid's edge: the portrait's lash colour along the lid line, over the skin.
        lashes = np.zeros(size, np.uint8)
        line = np.round((lid - offset) * 16).astype(np.int32)
        thickness = max(1, int(round(eye_width * LASH_WIDTH)))
        cv2.polylines(lashes, [line], False, 255, thickness, cv2.LINE_AA, shift=4)
        lash_alpha = lashes.astype(np.float32) / 255
        if self.lash_blur > 0:  # softened, its core still opaque: a fainter line read as an eye left open
            soft = cv2.GaussianBlur(lash_alpha, (0, 0), self.lash_blur)
            lash_alpha = np.minimum(soft / max(float(soft.max()), 1e-6), 1.0)
        painted = skin.astype(np.float32) * (1 - lash_alpha[..., None]) + lash * lash_alpha[..., None]
        alpha = strength * np.maximum(alpha, lash_alpha)[..., None]
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi + alpha * (painted - roi), 0, 255).astype(np.uint8)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x2 rotation and scale that turns vector `source` into `target`."""
    a = complex(*target) / complex(*source)
    return np.array([[a.real, -a.imag], [a.imag, a.real]])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _distance_to(line: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 distance of each pixel to a polyline (N, 2); capped at the canvas's size, which is what a line
    entirely off the canvas (an eye at the frame's edge) gets."""
    canvas = np.full(size, 255, np.uint8)
    cv2.polylines(canvas, [np.round(line * 16).astype(np.int32)], False, 0, 1, cv2.LINE_8, shift=4)
    return np.minimum(cv2.distanceTransform(canvas, cv2.DIST_L2, 3), float(sum(size)))


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) float32 bilinear colours at points (N, 2)."""
    xy = points.astype(np.float32)[None]
    return cv2.remap(image, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR).reshape(-1, 3).astype(np.float32)
