"""Piecewise-affine warp of the whole frame over the face mesh plus head, neck and background points.

Built once per portrait: control points (468 mesh points; rings over hair, ears and neck; a still frame
border) and a Delaunay triangulation of them. Each ring point is anchored to a face-oval point and moves
by that point's displacement (smoothed along the oval) times a weight that decays outwards and below the
chin, so the displacement field is smooth: hair and neck follow the head, the background and shoulders
stay, and no triangle next to the jaw folds into a saw-tooth seam when the head turns.
Each frame: move the points, move them again with the camera (a zoom about the head, so a farther head comes
with smaller shoulders), compute one affine per triangle, rasterise each triangle's source coordinates into
per-pixel maps (openvasa.render.raster, compiled), and sample the source with one remap. The source is the
portrait inside its wider context, so a zoomed-out frame shows more of the picture, and the zoom costs no
second resample.
"""

import cv2
import numpy as np
from scipy.spatial import Delaunay

from openvasa.face import landmarks as lm
from openvasa.render.raster import fill_affine_maps

N_MESH = 468  # iris points are drawn as their own layer, not warped
RING_SCALES = (1.22, 1.55, 1.95)  # distance of head rings from the face centre, in oval radii
RING_WEIGHTS_ABOVE_CHIN = (1.0, 0.7, 0.35)
RING_WEIGHTS_BELOW_CHIN = (0.6, 0.25, 0.0)
SILHOUETTE_BAND = 0.08  # face heights
OVAL_SMOOTHING = 1.5  # Gaussian sigma, in oval points, of the displacement handed to the rings
BORDER_STEPS = 16
BORDER_REACH = 0.75  # share of its distance to the still points ahead that a moving ring point may travel
HEAD_EDGE_CLEARANCE = 0.1  # frame sizes: the frame's edge is held still only this far from the head's rings


class MeshWarper:
    """Warps one source image given target positions of its 478 landmarks. The frame is S x S; the source image
    is the frame with `margin` pixels of context on every side."""

    def __init__(self, source_landmarks: np.ndarray, size: int, margin: int = 0) -> None:
        self.size = size
        self.margin = margin
        self.source_landmarks = source_landmarks.astype(np.float64)
        extra, self.extra_weight, self.extra_anchor, extra_layer, self._room_low, self._room_high = (
            _head_and_border_points(self.source_landmarks, size, margin)
        )
        self.extra_source = extra
        n_oval = len(lm.FACE_OVAL)
        offsets = np.arange(n_oval)[:, None] - np.arange(n_oval)[None]
        offsets = (offsets + n_oval // 2) % n_oval - n_oval // 2  # the oval is closed
        kernel = np.exp(-0.5 * (offsets / OVAL_SMOOTHING) ** 2)
        self._oval_smoother = kernel / kernel.sum(1, keepdims=True)  # (36, 36)
        # Mesh points near the silhouette blend towards the smoothed oval motion (weight 1 on the oval,
        # fading to 0 at SILHOUETTE_BAND face heights inside it), so the cheek edge stays a smooth curve.
        oval_xy = self.source_landmarks[list(lm.FACE_OVAL), :2]
        dist = np.linalg.norm(self.source_landmarks[:N_MESH, None, :2] - oval_xy[None], axis=-1)
        face_height = np.linalg.norm(self.source_landmarks[lm.FOREHEAD_TOP, :2] - self.source_landmarks[lm.CHIN, :2])
        self._band_anchor = dist.argmin(1)
        self._band_weight = np.clip(1 - dist.min(1) / (SILHOUETTE_BAND * face_height), 0, 1)[:, None]
        points = np.concatenate([self.source_landmarks[:N_MESH], extra])
        self.source_points = points
        self.triangles = Delaunay(points[:, :2]).simplices.astype(np.int64)  # (F, 3)
        # Drawing order: background first, then the rings from outside in, the face last, so where a
        # turning head folds the mesh, the face wins over hair and hair over background.
        point_layer = np.concatenate([np.full(N_MESH, len(RING_SCALES) + 1), extra_layer])
        self.triangle_layer = point_layer[self.triangles].min(1)
        # Homogeneous source vertices per triangle, (F, 3, 3): solved against target vertices each frame.
        self._source_tri = np.concatenate([points[self.triangles][..., :2], np.ones((len(self.triangles), 3, 1))], 2)
        self._source_orientation = np.sign(np.linalg.det(self._source_tri))

    def target_points(self, target_landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) target landmarks -> (P, 3) positions of every control point."""
        oval = list(lm.FACE_OVAL)
        shift = self._oval_smoother @ (target_landmarks[oval] - self.source_landmarks[oval])  # (36, 3)
        extra = self.extra_source + _toward_border(
            self.extra_weight[:, None] * shift[self.extra_anchor], self._room_low, self._room_high
        )
        mesh = target_landmarks[:N_MESH].astype(np.float64)
        # The silhouette's landmark depths are noisy; turned, they would make the jaw line saw-toothed.
        smooth = self.source_landmarks[:N_MESH] + shift[self._band_anchor]
        mesh += self._band_weight * (smooth - mesh)
        return np.concatenate([mesh, extra])

    def backward_map(
        self, target_landmarks: np.ndarray, zoom: float = 1.0, centre: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel source coordinates (map_x, map_y), each (S, S) float32, for cv2.remap of the source image.
        target_landmarks are in the unzoomed frame; the camera then zooms it by `zoom` about `centre` (2,)."""
        target = self.target_points(target_landmarks)
        centre = np.zeros(2) if centre is None else np.asarray(centre, np.float64)
        tri_xy = centre + zoom * (target[self.triangles][..., :2] - centre)  # (F, 3, 2) in the output frame
        coeffs, det = _affines(tri_xy, self._source_tri[..., :2])  # (F, 3, 2), (F,)
        ok = np.abs(det) > 1e-6
        back_facing = np.sign(det) != self._source_orientation
        # Drawing order: triangles that turned away from the camera (the far cheek of a turned head folds over
        # itself) go first, as mere hole fillers; then layer by layer, far before near within a layer, so near ones
        # win where the mesh folds.
        depth = target[self.triangles][..., 2].mean(1)
        order = np.lexsort((-depth, self.triangle_layer, ~back_facing))
        order = order[ok[order]]
        # Pixels no triangle covers (beyond the frame's border, zoomed out) see the context through the camera.
        camera = np.array([[1 / zoom, 0], [0, 1 / zoom], centre * (1 - 1 / zoom)])
        coeffs[:, 2] += self.margin  # frame coordinates -> source image coordinates
        camera[2] += self.margin
        map_x = np.empty((self.size, self.size), np.float32)
        map_y = np.empty((self.size, self.size), np.float32)
        fill_affine_maps(tri_xy, coeffs, order, camera, map_x, map_y)
        return map_x, map_y

    def warp(
        self,
        source_image: np.ndarray,
        target_landmarks: np.ndarray,
        zoom: float = 1.0,
        centre: np.ndarray | None = None,
    ) -> np.ndarray:
        """The (S, S, 3) output frame: source_image (S + 2 margin square) warped to the target landmarks (in the
        unzoomed frame), seen through the camera zoom."""
        map_x, map_y = self.backward_map(target_landmarks, zoom, centre)
        return cv2.remap(source_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _affines(target: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle, the affine A (3, 2) with source = [x, y, 1] @ A for its target vertices, in closed form
    (Cramer's rule: 10x faster than a batched solve), and the determinant of [target | 1] (0 when degenerate,
    whose A is left 0). target, source: (F, 3, 2)."""
    x, y = target[..., 0], target[..., 1]
    # Cofactors of the 3x3 matrix [[x0, y0, 1], [x1, y1, 1], [x2, y2, 1]], transposed: its adjugate.
    adjugate = np.stack([
        np.stack([y[:, 1] - y[:, 2], y[:, 2] - y[:, 0], y[:, 0] - y[:, 1]], -1),
        np.stack([x[:, 2] - x[:, 1], x[:, 0] - x[:, 2], x[:, 1] - x[:, 0]], -1),
        np.stack([x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1], x[:, 2] * y[:, 0] - x[:, 0] * y[:, 2],
                  x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0]], -1),
    ], 1)  # fmt: skip
    det = x[:, 0] * adjugate[:, 0, 0] + x[:, 1] * adjugate[:, 0, 1] + x[:, 2] * adjugate[:, 0, 2]  # first column
    ok = np.abs(det) > 1e-6
    scale = np.where(ok, 1 / np.where(ok, det, 1), 0)
    return (adjugate * scale[:, None, None]) @ source, det


def _toward_border(shift: np.ndarray, room_low: np.ndarray, room_high: np.ndarray) -> np.ndarray:
    """Shifts (M, 3) eased per x and y so that no point travels more than BORDER_REACH of its room (M, 2) towards the
    still points it moves to: a head rising in a tight crop squeezes the hair above it instead of folding it over."""
    out = shift.copy()
    room = BORDER_REACH * np.where(shift[:, :2] < 0, room_low, room_high)
    out[:, :2] = room * np.tanh(shift[:, :2] / room)
    return out


def _head_and_border_points(
    landmarks: np.ndarray, size: int, margin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rings around the face oval (hair, ears, neck) that follow the head partly, and still border points.

    The frame's edge is held still where the background reaches it; where the head does (a tight crop: hair over
    the top edge), the edge is left free and the context's outer edge, `margin` further out, holds instead, so the
    head can move across the frame's edge as in a real video.
    Returns points (M, 3), weights (M,) in [0, 1] (how much of their oval point's motion each follows),
    anchors (M,) (index into FACE_OVAL; border points have weight 0 and anchor 0), layers (M,) (the innermost ring
    is len(RING_SCALES), the border 0) and each point's room towards the still points below and above it in x and
    y (M, 2) each, for _toward_border.
    """
    oval = landmarks[list(lm.FACE_OVAL)]
    centre = oval.mean(0)
    chin_y = landmarks[lm.CHIN, 1]
    face_height = np.linalg.norm(landmarks[lm.FOREHEAD_TOP, :2] - landmarks[lm.CHIN, :2])
    rings, weights = [], []
    for scale, w_above, w_below in zip(RING_SCALES, RING_WEIGHTS_ABOVE_CHIN, RING_WEIGHTS_BELOW_CHIN, strict=True):
        ring = centre + (oval - centre) * np.array([scale, scale, 1.0])
        ring[:, 2] = oval[:, 2] + 0.1 * face_height * (scale - 1)  # a little behind the face surface
        below = np.clip((ring[:, 1] - (chin_y - 0.1 * face_height)) / (0.3 * face_height), 0, 1)
        rings.append(ring)
        weights.append(w_above * (1 - below) + w_below * below)
    ring_pts, ring_wts = np.concatenate(rings), np.concatenate(weights)
    moving = ring_pts[ring_wts > 0, :2]
    edge = _square(0, size - 1)
    near_head = np.linalg.norm(edge[:, None] - moving[None], axis=-1).min(1) < HEAD_EDGE_CLEARANCE * size
    edge = edge[~near_head]
    still = np.concatenate([edge, _square(-margin, size - 1 + margin)]) if margin else edge
    # Keep moving rings strictly inside the source and drop points too close to an earlier one.
    lo, hi = -margin + 4, size - 1 + margin - 4
    ring_pts[:, :2] = np.where(ring_wts[:, None] > 0, np.clip(ring_pts[:, :2], lo, hi), ring_pts[:, :2])
    pts = np.concatenate([ring_pts, np.concatenate([still, np.full((len(still), 1), centre[2])], 1)])
    wts = np.concatenate([ring_wts, np.zeros(len(still))])
    anchors = np.concatenate([np.tile(np.arange(len(oval)), len(RING_SCALES)), np.zeros(len(still), int)])
    layers = np.concatenate([np.repeat(np.arange(len(RING_SCALES), 0, -1), len(oval)), np.zeros(len(still), int)])
    keep = _spread_out(np.concatenate([landmarks[:N_MESH, :2], pts[:, :2]]), min_dist=4.0)[N_MESH:]
    pts, wts, anchors, layers = pts[keep], wts[keep], anchors[keep], layers[keep]
    # Room towards the nearest still point straight below / above (left / right) of each point: the frame's edge
    # where it is held there, else the context's edge.
    xy = pts[:, :2]
    room_low, room_high = np.empty_like(xy), np.empty_like(xy)
    for axis in (0, 1):
        across = np.abs(xy[:, None, 1 - axis] - still[None, :, 1 - axis]) <= size / BORDER_STEPS  # (M, B)
        gap = xy[:, None, axis] - still[None, :, axis]  # (M, B) > 0 where the still point is below
        room_low[:, axis] = np.where(across & (gap > 0), gap, np.inf).min(1)
        room_high[:, axis] = np.where(across & (gap < 0), -gap, np.inf).min(1)
    bound = size + 2 * margin
    return pts, wts, anchors, layers, np.minimum(room_low, bound), np.minimum(room_high, bound)


def _square(low: float, high: float) -> np.ndarray:
    """(4 (BORDER_STEPS + 1), 2) points along the edges of the square [low, high]²."""
    steps = np.linspace(low, high, BORDER_STEPS + 1)
    return np.concatenate([
        np.stack([steps, np.full_like(steps, low)], 1), np.stack([steps, np.full_like(steps, high)], 1),
        np.stack([np.full_like(steps, low), steps], 1), np.stack([np.full_like(steps, high), steps], 1),
    ])  # fmt: skip


def _spread_out(xy: np.ndarray, min_dist: float) -> np.ndarray:
    """Boolean mask keeping each point unless it lies within min_dist of an earlier kept point."""
    keep = np.ones(len(xy), bool)
    for i in range(len(xy)):
        if keep[i]:
            close = np.linalg.norm(xy[i + 1 :] - xy[i], axis=1) < min_dist
            keep[i + 1 :] &= ~close
    return keep
