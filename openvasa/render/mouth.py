"""Mouth interior: when the target mouth opens wider than the portrait's, the gap between the inner lips
is filled with an oral cavity, an upper teeth band and (when wide open) lower teeth and tongue, coloured
from the portrait's own lips and face. A portrait that shows its teeth keeps them: its own mouth
interior moves with the upper lip (teeth are fixed to the skull) over the synthetic cavity. Lips stay
lips: only pixels inside the inner-lip contour change."""

import cv2
import numpy as np

from openvasa.face import landmarks as lm
from openvasa.face.geometry import fit_similarity
from openvasa.render.eyes import polygon_mask

FADE_IN = 0.03  # opening beyond the portrait's own (eye distances) over which the interior fades in
SHOWS_TEETH = 0.05  # portrait's inner-lip opening (eye distances) above which its own interior is reused
TEETH_LUMA, TEETH_CHROMA = 0.9, 0.3  # the portrait's own teeth: at least this share of the skin's brightness, and
# channels no further apart than this share of the brightest
SOFTEN = 0.012  # Gaussian sigma (eye distances) of the drawn interior: a real one is never crisper than its lips


class MouthLayer:
    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        self.source_opening = float(lm.mouth_opening(landmarks))
        lips = polygon_mask(image.shape[:2], landmarks[lm.LIPS_OUTER_CONTOUR]) > 0.5
        lips &= polygon_mask(image.shape[:2], landmarks[lm.LIPS_INNER_CONTOUR]) < 0.5
        face = polygon_mask(image.shape[:2], landmarks[list(lm.FACE_OVAL)]) > 0.5
        lip_colour = np.median(image[lips], 0) if lips.any() else np.array([150.0, 80, 80])
        skin_luma = float(np.median(image[face & ~lips].mean(1))) if face.any() else 160.0
        self.cavity = lip_colour * np.array([0.42, 0.24, 0.24])  # dark and red, like a real mouth
        self.tongue = lip_colour * 0.8
        self.teeth = np.array([236.0, 232.0, 220.0]) * np.clip(0.6 + skin_luma / 400, 0.75, 1.0)
        self.own_interior = None
        if self.source_opening > SHOWS_TEETH:
            mask = polygon_mask(image.shape[:2], landmarks[lm.LIPS_INNER_CONTOUR])
            self.own_interior = (image.astype(np.float32), cv2.erode(mask, np.ones((3, 3))), landmarks.copy())
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
            self._overlay_own_teeth(interior, target, offset)
        alpha = (cv2.GaussianBlur(mask, (3, 3), 0) * strength)[..., None]
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = (roi + alpha * (interior - roi)).astype(np.uint8)

    def _interior(self, target: np.ndarray, offset: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) float32 picture of the mouth interior in the ROI, softened (SOFTEN)."""
        h, w = shape
        eye_dist = float(lm.eye_distance(target))
        upper = target[list(lm.LIPS_INNER_UPPER), :2] - offset
        lower = target[list(lm.LIPS_INNER_LOWER), :2] - offset
        xs = np.arange(w, dtype=np.float32)
        y_up = np.interp(xs, *_sorted_xy(upper))
        y_lo = np.interp(xs, *_sorted_xy(lower))
        gap = np.maximum(y_lo - y_up, 1e-3)
        left, right = upper[0, 0], upper[-1, 0]
        centre_x, half_width = (left + right) / 2, max(abs(right - left) / 2, 1.0)
        u = (xs - centre_x) / half_width  # -1..1 across the mouth
        ys = np.arange(h, dtype=np.float32)[:, None]
        v = (ys - y_up) / gap  # 0 at upper inner lip, 1 at lower

        # Cavity: darkest in the middle and at the back.
        depth = np.clip(1 - 0.6 * (u**2) - 0.5 * (2 * v - 1) ** 2, 0, 1)[..., None]
        out = self.cavity * (1.1 - 0.6 * depth)
        out = np.broadcast_to(out, (h, w, 3)).astype(np.float32).copy()

        # Tongue low in the mouth when it is open wide.
        tongue = np.clip((v - 0.55) * 4, 0, 1) * np.clip(1 - u**2 * 1.5, 0, 1) * np.clip(gap / eye_dist * 8 - 0.6, 0, 1)
        out += tongue[..., None] * (self.tongue - out) * 0.8

        # Upper teeth: hang from the upper lip, up to ~9% of eye distance, fading towards the corners.
        upper_h = np.minimum(0.6 * gap, 0.09 * eye_dist)
        t_up = (ys - y_up) / np.maximum(upper_h, 1e-3)
        lateral = np.clip(1.25 - np.abs(u) * 1.35, 0, 1)
        teeth_up = np.clip((1 - t_up) * 3, 0, 1) * (t_up > -0.3) * lateral
        # Lower teeth show only when the jaw opens well.
        lower_h = np.clip(gap - 0.07 * eye_dist, 0, 0.05 * eye_dist)
        t_lo = (y_lo - ys) / np.maximum(lower_h, 1e-3)
        teeth_lo = np.clip((1 - t_lo) * 3, 0, 1) * (t_lo > -0.3) * lateral * (lower_h > 0.5)
        # Shading: teeth are darker towards the corners and under the lip; faint gaps between incisors.
        gaps = 1 - 0.12 * np.exp(-(((np.abs(u) * half_width) % (0.09 * eye_dist) - 0.045 * eye_dist) ** 2) / 1.0)
        shade = (0.85 + 0.15 * lateral) * gaps
        teeth_colour = self.teeth * (shade * np.clip(0.88 + 0.12 * t_up, 0.88, 1.0))[..., None]
        out += teeth_up[..., None] * (teeth_colour - out)
        out += (0.8 * teeth_lo)[..., None] * (self.teeth * 0.8 * shade[..., None] - out)
        return cv2.GaussianBlur(out, (0, 0), SOFTEN * eye_dist)

    def _overlay_own_teeth(self, interior: np.ndarray, target: np.ndarray, offset: np.ndarray) -> None:
        """Draw the portrait's own mouth interior, moved with the upper inner lip, over `interior`."""
        image, mask, source = self.own_interior
        upper = list(lm.LIPS_INNER_UPPER)
        s, rot, t = fit_similarity(source[upper, :2].astype(np.float64), target[upper, :2].astype(np.float64))
        affine = np.hstack([s * rot, (t - offset)[:, None]]).astype(np.float32)
        size = (interior.shape[1], interior.shape[0])
        own = cv2.warpAffine(image, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Only its teeth: the dark of its own small opening, stretched over a wider one, hid the drawn teeth.
        luma = own.mean(2, keepdims=True)
        dark, bright = self.cavity.mean(), self.teeth.mean()
        teeth = np.clip((luma - dark) / max(0.6 * (bright - dark), 1.0), 0, 1)
        alpha = cv2.warpAffine(mask, affine, size, flags=cv2.INTER_LINEAR)[..., None] * teeth
        interior += alpha * (own - interior)


def _sorted_xy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]
