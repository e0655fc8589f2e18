"""The mouth interior learned from real talking clips: an atlas of inner-mouth strips indexed by how far the lips are
apart, in colours relative to the light of the face each came from (`light_reference`).

Teeth are fixed to the jaws: upper teeth hang a set distance below the upper lip, lower teeth stand a set distance
above the lower lip, whoever it is and however wide the mouth. So the atlas holds two strips per opening, each in
mouth coordinates: u from -1 at the left inner-lip corner to +1 at the right (along the line between the corners,
so a tilted head is straightened), and depth in eye distances away from the upper lip (down) or the lower lip (up).
A pixel of the open mouth takes the strip of the lip it is nearer to; what the opening changes (lower teeth and
tongue showing, a deeper dark) is what the atlas's openings hold. Fitted by `openvasa.tools.fit_mouth_interior`."""

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.render.eyes import iris_circle

ATLAS_FILE = "mouth_interior.npz"
# Cheek landmarks: skin lit like the face, away from lips, eyes and hair; the right cheek's (under the right eye),
# the left's, and both.
RIGHT_CHEEK, LEFT_CHEEK = (50, 101, 205), (280, 330, 425)
CHEEKS = RIGHT_CHEEK + LEFT_CHEEK
CHEEK_RADIUS = 0.05  # eye distances: the square sampled around each cheek landmark
LIPS_CORNERS = (lm.LIPS_INNER_UPPER[0], lm.LIPS_INNER_UPPER[-1])
SCLERA_PERCENTILE = 75  # the eye opening's pixels outside the iris: lashes, lid shadow and eye whites
MIN_SCLERA_PIXELS = 40
SCLERA_OVER_CHEEKS = 1.1  # eye whites' brightness over the cheeks', for a portrait whose eye whites do not show
SEAM = 0.02  # eye distances: where the two strips meet, they blend over this width


@dataclass(frozen=True)
class MouthFrame:
    """The inner lips of one face in mouth coordinates. origin: (2,) midpoint of the inner-lip corners; axis_u,
    axis_v: (2,) unit vectors along the corners and down across the lips; half_width, eye_distance: px;
    upper/lower: the inner lips' (u, t) points sorted by u, t in px along axis_v."""

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    half_width: float
    eye_distance: float
    upper: tuple[np.ndarray, np.ndarray]
    lower: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, points: np.ndarray) -> "MouthFrame":
        """From (478, 2|3) landmarks in pixels."""
        left, right = points[LIPS_CORNERS[0], :2].astype(np.float64), points[LIPS_CORNERS[1], :2].astype(np.float64)
        half_width = max(float(np.linalg.norm(right - left)) / 2, 1e-3)
        axis_u = (right - left) / (2 * half_width)
        axis_v = np.array([-axis_u[1], axis_u[0]])  # image y points down: this is "down" for an upright head
        origin = (left + right) / 2

        def curve(ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
            rel = points[list(ids), :2] - origin
            u, t = rel @ axis_u / half_width, rel @ axis_v
            order = np.argsort(u)
            return u[order], t[order]

        upper, lower = curve(lm.LIPS_INNER_UPPER), curve(lm.LIPS_INNER_LOWER)
        return cls(origin, axis_u, axis_v, half_width, float(lm.eye_distance(points)), upper, lower)

    def lip_lines(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """t of the upper and the lower inner lip at each u (px along axis_v)."""
        return np.interp(u, *self.upper), np.interp(u, *self.lower)

    def to_image(self, u: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, t) -> image pixels (x, y), float32 maps of u's and t's broadcast shape."""
        s = u * self.half_width
        x = self.origin[0] + s * self.axis_u[0] + t * self.axis_v[0]
        y = self.origin[1] + s * self.axis_u[1] + t * self.axis_v[1]
        return x.astype(np.float32), y.astype(np.float32)

    def to_mouth(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image pixels -> (u, t)."""
        dx, dy = x - self.origin[0], y - self.origin[1]
        return (dx * self.axis_u[0] + dy * self.axis_u[1]) / self.half_width, dx * self.axis_v[0] + dy * self.axis_v[1]


def cheek_colour(image: np.ndarray, points: np.ndarray, cheeks: tuple[int, ...] = CHEEKS) -> np.ndarray:
    """(3,) median RGB of the cheeks (landmark indices `cheeks`: both, or one side's)."""
    radius = max(int(round(CHEEK_RADIUS * float(lm.eye_distance(points)))), 1)
    h, w = image.shape[:2]
    patches = []
    for index in cheeks:
        x, y = np.round(points[index, :2]).astype(int)
        patch = image[max(y - radius, 0) : min(y + radius + 1, h), max(x - radius, 0) : min(x + radius + 1, w)]
        patches.append(patch.reshape(-1, 3))
    pixels = np.concatenate(patches).astype(np.float64)
    if len(pixels) == 0:
        raise OpenVasaError("the cheeks lie outside the picture")
    return np.maximum(np.median(pixels, 0), 1.0)


def sclera_luma(image: np.ndarray, points: np.ndarray) -> float | None:
    """Brightness of the whites of the eyes (the SCLERA_PERCENTILE of the eye openings' pixels outside the irises),
    or None where too little of them shows (eyes nearly shut, or tiny)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for contour in (lm.RIGHT_EYE_CONTOUR, lm.LEFT_EYE_CONTOUR):
        cv2.fillPoly(mask, [np.round(points[contour, :2]).astype(np.int32)], 1)
    for iris in (lm.RIGHT_IRIS, lm.LEFT_IRIS):
        centre, radius = iris_circle(points, iris)
        cv2.circle(mask, tuple(np.round(centre).astype(int)), int(np.ceil(radius * 1.15)), 0, -1)
    pixels = image[mask.astype(bool)].astype(np.float64).mean(1)
    return float(np.percentile(pixels, SCLERA_PERCENTILE)) if len(pixels) >= MIN_SCLERA_PIXELS else None


def light_reference(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(3,) the colour the atlas is relative to: the cheeks' hue at the brightness of the whites of the eyes. The
    cheeks alone would carry the skin's own darkness into the teeth (a dark-skinned source's mouth is bright
    relative to its cheeks and came out too bright on lighter skin); eye whites are about as light on everyone,
    lit as the face is."""
    cheeks = cheek_colour(image, points)
    whites = sclera_luma(image, points)
    luma = whites if whites is not None else SCLERA_OVER_CHEEKS * cheeks.mean()
    return cheeks * (luma / cheeks.mean())


class MouthAtlas:
    """openings: (K,) inner-lip openings (eye distances), ascending; upper, lower: (K, R, C, 3) float32 colours
    over `light_reference`'s, rows going away from the upper (lower) lip in steps of depth / R eye distances,
    columns along u from -1 to 1."""

    def __init__(self, openings: np.ndarray, upper: np.ndarray, lower: np.ndarray, depth: float) -> None:
        self.openings = np.asarray(openings, np.float64)
        self.upper, self.lower = np.asarray(upper, np.float32), np.asarray(lower, np.float32)
        self.depth = float(depth)

    @classmethod
    def load(cls, path: Path | None = None) -> "MouthAtlas":
        source = path if path is not None else resources.files("openvasa") / "assets" / ATLAS_FILE
        with source.open("rb") as f:
            data = np.load(f)
            return cls(data["openings"], data["upper"], data["lower"], float(data["depth"]))

    def save(self, path: Path, source: str) -> None:
        f16 = np.float16
        arrays = {"openings": self.openings, "upper": self.upper.astype(f16), "lower": self.lower.astype(f16)}
        np.savez_compressed(path, **arrays, depth=self.depth, source=source)

    def strips(self, opening: float) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower strip at this opening, blended between the two nearest atlas openings."""
        k = int(np.clip(np.searchsorted(self.openings, opening), 1, len(self.openings) - 1))
        a, b = self.openings[k - 1], self.openings[k]
        w = float(np.clip((opening - a) / (b - a), 0, 1))
        return (1 - w) * self.upper[k - 1] + w * self.upper[k], (1 - w) * self.lower[k - 1] + w * self.lower[k]

    def draw(self, opening: float, frame: MouthFrame, offset: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) relative interior in an image ROI of `shape` whose top-left pixel is `offset` (x, y)."""
        upper, lower = self.strips(opening)
        rows, cols = upper.shape[:2]
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        u, t = frame.to_mouth(xs + offset[0], ys + offset[1])
        t_up, t_lo = frame.lip_lines(u)
        below_upper, above_lower = (t - t_up) / frame.eye_distance, (t_lo - t) / frame.eye_distance
        map_x = ((u + 1) / 2 * cols - 0.5).astype(np.float32)
        step = rows / self.depth
        top = cv2.remap(
            upper, map_x, (below_upper * step - 0.5).astype(np.float32), cv2.INTER_LINEAR, None, cv2.BORDER_REPLICATE
        )
        bottom = cv2.remap(
            lower, map_x, (above_lower * step - 0.5).astype(np.float32), cv2.INTER_LINEAR, None, cv2.BORDER_REPLICATE
        )
        weight = np.clip(0.5 + (above_lower - below_upper) / (2 * SEAM), 0, 1)[..., None]
        return bottom + weight * (top - bottom)
