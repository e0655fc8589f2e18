"""Eyes as their own layer: the irises are lifted out of the portrait once, and each frame an iris
sprite is drawn at the target iris position, clipped by the target lid opening. Gaze moves the sprite;
blinks shrink the opening over it, so the iris never smears."""

from dataclasses import dataclass

import cv2
import numpy as np

from openvasa.face import landmarks as lm

SUBPIXEL_BITS = 4
EYES = (
    (lm.RIGHT_EYE_CONTOUR, lm.RIGHT_IRIS, lm.RIGHT_EYE_CORNERS),
    (lm.LEFT_EYE_CONTOUR, lm.LEFT_IRIS, lm.LEFT_EYE_CORNERS),
)


@dataclass
class IrisSprite:
    """patch: (P, P, 3) uint8 full iris disc (lid-hidden parts filled in); alpha: (P, P) float32 disc;
    centre: (2,) iris centre in patch pixels; radius: source iris radius in px; eye_width: source eye
    width in px."""

    patch: np.ndarray
    alpha: np.ndarray
    centre: np.ndarray
    radius: float
    eye_width: float


def polygon_mask(shape: tuple[int, int], polygon: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """Anti-aliased (H, W) float32 mask of a polygon given in pixels (subpixel precise)."""
    mask = np.zeros(shape, np.uint8)
    pts = polygon[:, :2] - (0 if offset is None else offset)
    fixed = np.round(pts * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 255, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
    return mask.astype(np.float32) / 255


def iris_circle(points: np.ndarray, iris: tuple[int, ...]) -> tuple[np.ndarray, float]:
    centre = points[iris[0], :2]
    radius = float(np.linalg.norm(points[list(iris[1:]), :2] - centre, axis=1).mean())
    return centre, radius


class EyeLayer:
    """Built from the portrait and its landmarks; `plate` is the portrait with the irises removed."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        self.plate = image.copy()
        self.sprites: list[IrisSprite] = []
        for contour, iris, (a, b) in EYES:
            centre, radius = iris_circle(landmarks, iris)
            eye_width = float(np.linalg.norm(landmarks[a, :2] - landmarks[b, :2]))
            half = int(np.ceil(radius * 1.5)) + 2
            x0, y0 = np.floor(centre).astype(int) - half
            size = 2 * half + 1
            box = (slice(max(y0, 0), y0 + size), slice(max(x0, 0), x0 + size))
            opening = polygon_mask(image.shape[:2], landmarks[contour])
            disc = np.zeros(image.shape[:2], np.uint8)
            cv2.circle(
                disc,
                tuple(np.round(centre * 16).astype(int)),
                int(radius * 16 * 1.08),
                255,
                -1,
                cv2.LINE_AA,
                4,
            )
            # Remove the visible iris from the plate, filling it from the surrounding eye white.
            hole = ((disc > 0) & (cv2.dilate(opening, np.ones((3, 3))) > 0.1)).astype(np.uint8)
            self.plate[box] = cv2.inpaint(self.plate[box], hole[box], 3, cv2.INPAINT_TELEA)
            # The sprite: the iris disc, its lid-hidden part filled from the visible part.
            patch = _padded_patch(image, x0, y0, size)
            hidden = (
                (_padded_patch(disc[..., None], x0, y0, size)[..., 0] > 0)
                & (_padded_patch(opening[..., None], x0, y0, size)[..., 0] < 0.5)
            ).astype(np.uint8)
            patch = cv2.inpaint(patch, hidden, 3, cv2.INPAINT_TELEA)
            alpha = np.zeros((size, size), np.uint8)
            local = (centre - [x0, y0]) * 16
            cv2.circle(alpha, tuple(np.round(local).astype(int)), int(radius * 16), 255, -1, cv2.LINE_AA, 4)
            self.sprites.append(IrisSprite(patch, alpha.astype(np.float32) / 255, local / 16, radius, eye_width))

    def composite(self, frame: np.ndarray, target: np.ndarray) -> None:
        """Draw both irises into `frame` (in place) at the target landmarks' iris positions."""
        h, w = frame.shape[:2]
        for (contour, iris, (a, b)), sprite in zip(EYES, self.sprites, strict=True):
            centre = target[iris[0], :2]
            scale = float(np.linalg.norm(target[a, :2] - target[b, :2])) / sprite.eye_width
            half = int(np.ceil(sprite.radius * scale * 1.6)) + 2
            x0, y0 = np.floor(centre).astype(int) - half
            x1, y1 = min(x0 + 2 * half + 1, w), min(y0 + 2 * half + 1, h)
            x0c, y0c = max(x0, 0), max(y0, 0)
            if x1 <= x0c or y1 <= y0c:
                continue
            shift = centre - [x0c, y0c] - scale * sprite.centre
            affine = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float32)
            size = (x1 - x0c, y1 - y0c)
            patch = cv2.warpAffine(sprite.patch, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            alpha = cv2.warpAffine(sprite.alpha, affine, size, flags=cv2.INTER_LINEAR)
            alpha *= polygon_mask((size[1], size[0]), target[contour], offset=np.array([x0c, y0c]))
            roi = frame[y0c:y1, x0c:x1].astype(np.float32)
            frame[y0c:y1, x0c:x1] = (roi + alpha[..., None] * (patch - roi)).astype(np.uint8)


def _padded_patch(image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """size x size patch at (x0, y0), edge-replicated where it leaves the image."""
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + size - w, y0 + size - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    if src.ndim == 2:
        src = src[..., None]
    return np.ascontiguousarray(src[y0 + pad : y0 + pad + size, x0 + pad : x0 + pad + size])
