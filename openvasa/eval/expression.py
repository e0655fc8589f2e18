"""Expression read from landmarks (canonical, decoded or re-detected in rendered frames): how much the mouth
corners are lifted, the brows raised and the eyes open, in outer-eye distances, in the face's own upright frame.

These measure whether an emotion control shows: `--emotion happy` against `--emotion sad` on the same portrait
and speech should differ by several hundredths of an eye distance at the mouth corners after rendering and
re-detection (corner_lift).
"""

import numpy as np

from openvasa.face import landmarks as lm

MOUTH_CORNERS = (61, 291)
LIP_MIDLINE = (13, 14)  # the inner lips' middle points: the line the corners sit on at rest
INNER_BROWS = (55, 107, 285, 336)
OUTER_BROWS = (46, 70, 276, 300)
EYE_CENTRES = (33, 133, 263, 362)  # the four eye corners


def _upright_y(points: np.ndarray) -> np.ndarray:
    """(..., 478) height of every point along the face's own downward axis (perpendicular to the outer-eye line),
    in outer-eye distances. points: (..., 478, 2|3), image axes (y down)."""
    xy = np.asarray(points, np.float64)[..., :2]
    across = xy[..., 263, :] - xy[..., 33, :]
    size = np.linalg.norm(across, axis=-1, keepdims=True)
    down = np.stack([-across[..., 1], across[..., 0]], axis=-1) / size  # across turned a quarter clockwise
    return np.einsum("...nd,...d->...n", xy, down) / size


def corner_lift(points: np.ndarray) -> np.ndarray:
    """(...,) how far the mouth corners sit above the lip midline, in outer-eye distances (+ up: a smile).
    points: (..., 478, 2|3)."""
    y = _upright_y(points)
    return y[..., list(LIP_MIDLINE)].mean(-1) - y[..., list(MOUTH_CORNERS)].mean(-1)


def brow_raise(points: np.ndarray, inner: bool = True) -> np.ndarray:
    """(...,) height of the inner (or outer) brows above the eye corners, in outer-eye distances."""
    y = _upright_y(points)
    brows = INNER_BROWS if inner else OUTER_BROWS
    return y[..., list(EYE_CENTRES)].mean(-1) - y[..., list(brows)].mean(-1)


def eye_openness(points: np.ndarray) -> np.ndarray:
    """(...,) lid gap over eye width, both eyes averaged."""
    return lm.eye_openness(np.asarray(points, np.float64)).mean(-1)


def expression_summary(points: np.ndarray) -> dict[str, float]:
    """Frame means of the expression measures of (T, 478, 2|3) landmarks; frames with missing points are skipped."""
    points = np.asarray(points, np.float64)
    valid = np.isfinite(points.reshape(len(points), -1)).all(1)
    points = points[valid]
    return {
        "corner_lift": float(corner_lift(points).mean()),
        "inner_brow_raise": float(brow_raise(points).mean()),
        "outer_brow_raise": float(brow_raise(points, inner=False).mean()),
        "eye_openness": float(eye_openness(points).mean()),
        "mouth_opening": float(lm.mouth_opening(points).mean()),
    }
