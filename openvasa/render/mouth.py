"""Mouth interior: when the target mouth opens wider than the portrait's, the gap between the inner lips is filled
with a real mouth's inside (teeth, tongue, the dark behind them) from the atlas learned on real clips
(`render.mouth_atlas`), in this face's own light. A portrait that shows its teeth keeps them: its own mouth
interior moves with the upper lip (teeth are fixed to the skull) over the atlas's. Lips stay lips: only pixels
inside the inner-lip contour change."""

from functools import cache

import cv2
import numpy as np

from openvasa.face import landmarks as lm
from openvasa.face.geometry import fit_similarity
from openvasa.render.eyes import polygon_mask
from openvasa.render.mouth_atlas import MouthAtlas, MouthFrame, light_reference

FADE_IN = 0.03  # opening beyond the portrait's own (eye distances) over which the interior fades in
SHOWS_TEETH = 0.05  # portrait's inner-lip opening (eye distances) above which its own interior is reused
TEETH_LUMA, TEETH_CHROMA = 0.9, 0.3  # the portrait's own teeth: at least this share of the skin's brightness, and
# channels no further apart than this share of the brightest
SOFTEN = 0.012  # Gaussian sigma (eye distances) of the drawn interior: a real one is never crisper than its lips
TEETH_ROWS = 0.5  # the atlas's upper teeth: the brightest pixels in this share of its upper strip


@cache
def shipped_atlas() -> MouthAtlas:
    return MouthAtlas.load()


class MouthLayer:
    def __init__(self, image: np.ndarray, landmarks: np.ndarray, atlas: MouthAtlas | None = None) -> None:
        self.source_opening = float(lm.mouth_opening(landmarks))
        self.atlas = atlas if atlas is not None else shipped_atlas()
        self.light = light_reference(image, landmarks)
        # The own-teeth overlay tells teeth from the dark of the mouth by brightness between these two.
        upper = self.atlas.upper[-1]
        self.cavity = upper[-1].min(0) * self.light
        self.teeth = np.percentile(upper[: max(1, int(TEETH_ROWS * len(upper)))].reshape(-1, 3), 90, 0) * self.light
        self.own_interior = None
        if self.source_opening > SHOWS_TEETH:
            mask = polygon_mask(image.shape[:2], landmarks[lm.LIPS_INNER_CONTOUR])
            self.own_interior = (image.astype(np.float32), mask, cv2.erode(mask, np.ones((3, 3))), landmarks.copy())
        face = polygon_mask(image.shape[:2], landmarks[list(lm.FACE_OVAL)]) > 0.5
        skin_luma = float(np.median(image[face].mean(1))) if face.any() else 160.0
        inside = polygon_mask(image.shape[:2], landmarks[lm.LIPS_INNER_CONTOUR]) > 0.5
        bright = inside & (image.mean(2) > np.percentile(image[inside].mean(1), 70)) if inside.sum() > 20 else None
        if bright is not None and bright.any():  # the portrait may show its teeth: use their colour
            own = np.median(image[bright], 0).astype(np.float64)
            # ... if they are teeth: light and nearly grey. A mouth ajar shows only its dark-red inside, whose
            # brightest pixels drew the teeth dark red.
            if own.mean() > TEETH_LUMA * skin_luma and np.ptp(own) < TEETH_CHROMA * own.max():
                self.teeth = own

    def composite(self, frame: np.ndarray, target: np.ndarray) -> None:
        """Fill the target inner-lip opening of `frame` (in place)."""
        opening = float(lm.mouth_opening(target))
        strength = 1.0 if self.own_interior is not None else np.clip((opening - self.source_opening) / FADE_IN, 0, 1)
        if strength <= 0 or opening <= 0:
            return
        contour = target[lm.LIPS_INNER_CONTOUR, :2]
        x0, y0 = np.floor(contour.min(0)).astype(int) - 2
        x1, y1 = np.ceil(contour.max(0)).astype(int) + 3
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 2:
            return
        offset = np.array([x0, y0])
        mask = polygon_mask((y1 - y0, x1 - x0), contour, offset)
        interior = self._interior(target, offset, (y1 - y0, x1 - x0))
        if self.own_interior is not None:
            self._overlay_own_interior(interior, target, offset)
        alpha = (cv2.GaussianBlur(mask, (3, 3), 0) * strength)[..., None]
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi + alpha * (interior - roi), 0, 255).astype(np.uint8)

    def _interior(self, target: np.ndarray, offset: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) float32 picture of the mouth interior in the ROI: the learned atlas at the target's opening,
        in this face's colours, softened (SOFTEN)."""
        eye_dist = float(lm.eye_distance(target))
        relative = self.atlas.draw(float(lm.mouth_opening(target)), MouthFrame.of(target), offset, shape)
        return cv2.GaussianBlur(relative * self.light.astype(np.float32), (0, 0), SOFTEN * eye_dist)

    def _overlay_own_interior(self, interior: np.ndarray, target: np.ndarray, offset: np.ndarray) -> None:
        """Draw the portrait's own mouth interior, moved with the upper inner lip, over `interior`: all of it while
        the mouth is as open as the portrait's, only its teeth once it opens FADE_IN wider."""
        image, mask, inner, source = self.own_interior
        upper = list(lm.LIPS_INNER_UPPER)
        s, rot, t = fit_similarity(source[upper, :2].astype(np.float64), target[upper, :2].astype(np.float64))
        affine = np.hstack([s * rot, (t - offset)[:, None]]).astype(np.float32)
        size = (interior.shape[1], interior.shape[0])
        own = cv2.warpAffine(image, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Wider open, only its teeth: the dark of its own small opening, moved into a wider one, hid the atlas's
        # teeth and tongue. As open as the portrait, all of it: a mouth ajar keeps its own dark (the first frame of
        # a clip whose speaker was mid-word got the atlas's lighter inside instead of its own).
        luma = own.mean(2, keepdims=True)
        dark, bright = self.cavity.mean(), self.teeth.mean()
        teeth = np.clip((luma - dark) / max(0.6 * (bright - dark), 1.0), 0, 1)
        own_share = np.clip(1 - (float(lm.mouth_opening(target)) - self.source_opening) / FADE_IN, 0, 1)
        shown = cv2.warpAffine(inner, affine, size, flags=cv2.INTER_LINEAR)
        if own_share > 0:
            # Its rim too while it is all its own: the atlas's bright band along the lips (the lower teeth of the clip
            # it comes from, up to 1.5 times the light) drew a light ring around a dark mouth ajar. Warped, not
            # blended at full size: the warp's output is the mouth's region only (0.5 ms a frame saved).
            rim = cv2.warpAffine(mask, affine, size, flags=cv2.INTER_LINEAR)
            shown += own_share * (rim - shown)
        alpha = shown[..., None] * np.maximum(teeth, own_share)
        interior += alpha * (own - interior)
