"""Piecewise-affine warp of the whole frame over the face mesh plus head, neck and background points.

Built once per portrait: control points (468 mesh points; rings over hair, ears and neck that follow the
head with a weight; a still frame border) and a Delaunay triangulation of them. Each frame: move the
points, compute one affine per triangle, rasterise triangle ids, and sample the source with one remap.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from openvasa.face import landmarks as lm
from openvasa.face.geometry import fit_similarity

N_MESH = 468  # iris points are drawn as their own layer, not warped
RING_SCALES = (1.22, 1.55, 1.95)  # distance of head rings from the face centre, in oval radii
RING_WEIGHTS_ABOVE_CHIN = (1.0, 0.75, 0.35)
RING_WEIGHTS_BELOW_CHIN = (0.45, 0.15, 0.0)
BORDER_STEPS = 16
SUBPIXEL_BITS = 4


@dataclass
class HeadMotion:
    """Similarity that takes the source head to the target head, about the source pivot.

    pivot: (3,) source rigid centroid; shift: (3,); scale: float; rotvec: (3,) axis-angle."""

    pivot: np.ndarray
    shift: np.ndarray
    scale: float
    rotvec: np.ndarray

    @classmethod
    def between(cls, source: np.ndarray, target: np.ndarray) -> "HeadMotion":
        rigid = list(lm.RIGID)
        s, rot, t = fit_similarity(source[rigid].astype(np.float64), target[rigid].astype(np.float64))
        pivot = source[rigid].mean(0).astype(np.float64)
        rotvec = cv2.Rodrigues(rot)[0][:, 0]
        return cls(pivot, s * rot @ pivot + t - pivot, s, rotvec)

    def apply(self, points: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Move (N, 3) points by this motion scaled by a per-point weight in [0, 1]."""
        out = np.empty_like(points, dtype=np.float64)
        for w in np.unique(weight):
            sel = weight == w
            rot = cv2.Rodrigues(self.rotvec * w)[0] * self.scale**w
            out[sel] = (points[sel] - self.pivot) @ rot.T + self.pivot + w * self.shift
        return out


class MeshWarper:
    """Warps one source image (size S x S) given target positions of its 478 landmarks."""

    def __init__(self, source_landmarks: np.ndarray, size: int) -> None:
        self.size = size
        self.source_landmarks = source_landmarks.astype(np.float64)
        extra, self.extra_weight = _head_and_border_points(self.source_landmarks, size)
        self.extra_source = extra
        points = np.concatenate([self.source_landmarks[:N_MESH], extra])
        self.source_points = points
        self.triangles = Delaunay(points[:, :2]).simplices.astype(np.int64)  # (F, 3)
        # Homogeneous source vertices per triangle, (F, 3, 3): solved against target vertices each frame.
        self._source_tri = np.concatenate([points[self.triangles][..., :2], np.ones((len(self.triangles), 3, 1))], 2)
        grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
        self._grid = (grid_x, grid_y)

    def target_points(self, target_landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) target landmarks -> (P, 3) positions of every control point."""
        motion = HeadMotion.between(self.source_landmarks, target_landmarks)
        extra = motion.apply(self.extra_source, self.extra_weight)
        return np.concatenate([target_landmarks[:N_MESH].astype(np.float64), extra])

    def backward_map(self, target_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel source coordinates (map_x, map_y), each (S, S) float32, for cv2.remap."""
        target = self.target_points(target_landmarks)
        tri_xy = target[self.triangles][..., :2]  # (F, 3, 2)
        target_h = np.concatenate([tri_xy, np.ones((len(tri_xy), 3, 1))], 2)  # (F, 3, 3)
        det = np.linalg.det(target_h)
        ok = np.abs(det) > 1e-6
        coeffs = np.zeros((len(tri_xy), 3, 2))
        # Affine A with source = [x, y, 1] @ A: solve target_h @ A = source per triangle.
        coeffs[ok] = np.linalg.solve(target_h[ok], self._source_tri[ok][..., :2])
        ids = self._raster_ids(tri_xy, target[self.triangles][..., 2].mean(1), ok)
        gx, gy = self._grid
        c = coeffs.astype(np.float32)[ids]  # (S, S, 3, 2)
        map_x = gx * c[..., 0, 0] + gy * c[..., 1, 0] + c[..., 2, 0]
        map_y = gx * c[..., 0, 1] + gy * c[..., 1, 1] + c[..., 2, 1]
        return map_x, map_y

    def _raster_ids(self, tri_xy: np.ndarray, depth: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """(S, S) int32 id of the triangle covering each pixel; far triangles are drawn first so that near
        ones win where a turning head folds the mesh."""
        ids = np.zeros((self.size, self.size), np.int32)
        fixed = np.round(tri_xy * (1 << SUBPIXEL_BITS)).astype(np.int32)
        for f in np.argsort(-depth):
            if ok[f]:
                cv2.fillConvexPoly(ids, fixed[f], int(f), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
        return ids

    def warp(self, source_image: np.ndarray, target_landmarks: np.ndarray) -> np.ndarray:
        map_x, map_y = self.backward_map(target_landmarks)
        return cv2.remap(source_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _head_and_border_points(landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rings around the face oval (hair, ears, neck) that follow the head partly, and a still border.

    Returns points (M, 3) and weights (M,) in [0, 1]: how much of the head motion each point follows.
    """
    oval = landmarks[list(lm.FACE_OVAL)]
    centre = oval.mean(0)
    chin_y = landmarks[lm.CHIN, 1]
    face_height = np.linalg.norm(landmarks[lm.FOREHEAD_TOP, :2] - landmarks[lm.CHIN, :2])
    points, weights = [], []
    for scale, w_above, w_below in zip(RING_SCALES, RING_WEIGHTS_ABOVE_CHIN, RING_WEIGHTS_BELOW_CHIN, strict=True):
        ring = centre + (oval - centre) * np.array([scale, scale, 1.0])
        ring[:, 2] = oval[:, 2] + 0.1 * face_height * (scale - 1)  # a little behind the face surface
        below = np.clip((ring[:, 1] - (chin_y - 0.1 * face_height)) / (0.3 * face_height), 0, 1)
        w = w_above * (1 - below) + w_below * below
        points.append(ring)
        weights.append(np.round(w, 2))  # few distinct weights: HeadMotion.apply loops over them
    steps = np.linspace(0, size - 1, BORDER_STEPS + 1)
    edge = np.concatenate([
        np.stack([steps, np.zeros_like(steps)], 1), np.stack([steps, np.full_like(steps, size - 1)], 1),
        np.stack([np.zeros_like(steps), steps], 1), np.stack([np.full_like(steps, size - 1), steps], 1),
    ])  # fmt: skip
    points.append(np.concatenate([edge, np.full((len(edge), 1), centre[2])], 1))
    weights.append(np.zeros(len(edge)))
    pts, wts = np.concatenate(points), np.concatenate(weights)
    # Keep moving rings strictly inside the frame and drop points too close to an earlier one.
    inner = wts > 0
    pts[inner, :2] = np.clip(pts[inner, :2], 4, size - 5)
    keep = _spread_out(np.concatenate([landmarks[:N_MESH, :2], pts[:, :2]]), min_dist=4.0)[N_MESH:]
    return pts[keep], wts[keep]


def _spread_out(xy: np.ndarray, min_dist: float) -> np.ndarray:
    """Boolean mask keeping each point unless it lies within min_dist of an earlier kept point."""
    keep = np.ones(len(xy), bool)
    for i in range(len(xy)):
        if keep[i]:
            close = np.linalg.norm(xy[i + 1 :] - xy[i], axis=1) < min_dist
            keep[i + 1 :] &= ~close
    return keep
