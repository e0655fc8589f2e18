"""The warp's scan-line rasteriser, compiled with Numba: per-pixel source coordinates of a triangle mesh.

Python can only rasterise triangle by triangle through OpenCV calls and then gather each pixel's affine from
full-size arrays (7 ms a frame at 512², 6 remaps); this loop writes each covered pixel's source coordinates
directly (under 1 ms). Compiled on first use and cached on disk (`cache=True`); `nogil` lets render threads
run it in parallel.
"""

import numpy as np
from numba import njit

EDGE_EPS = 1e-7  # pixels on a shared edge belong to both triangles (the later one wins), so no cracks open


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def fill_affine_maps(
    tri_xy: np.ndarray, coeffs: np.ndarray, order: np.ndarray, camera: np.ndarray, map_x: np.ndarray, map_y: np.ndarray
) -> None:
    """Fill map_x, map_y (S, S) float32 in place: pixels whose centre lies in triangle f (tri_xy (F, 3, 2), frame
    pixels) get [x, y, 1] @ coeffs[f] (coeffs (F, 3, 2)); triangles are drawn in `order` (K,), later ones over
    earlier ones; pixels no triangle covers get [x, y, 1] @ camera (3, 2)."""
    rows, cols = map_x.shape
    for y in range(rows):
        for x in range(cols):
            map_x[y, x] = camera[0, 0] * x + camera[1, 0] * y + camera[2, 0]
            map_y[y, x] = camera[0, 1] * x + camera[1, 1] * y + camera[2, 1]
    for f in order:
        xs, ys = tri_xy[f, :, 0], tri_xy[f, :, 1]
        top = max(0, int(np.ceil(ys.min() - EDGE_EPS)))
        bottom = min(rows - 1, int(np.floor(ys.max() + EDGE_EPS)))
        for y in range(top, bottom + 1):
            # The span of this row inside the triangle: where the row crosses the three edges.
            left, right = np.inf, -np.inf
            for k in range(3):
                ux, uy, vx, vy = xs[k], ys[k], xs[(k + 1) % 3], ys[(k + 1) % 3]
                if min(uy, vy) - EDGE_EPS <= y <= max(uy, vy) + EDGE_EPS:
                    if abs(vy - uy) < 1e-12:  # a horizontal edge on this row
                        left, right = min(left, ux, vx), max(right, ux, vx)
                    else:
                        cross = ux + (y - uy) / (vy - uy) * (vx - ux)
                        left, right = min(left, cross), max(right, cross)
            first = max(0, int(np.ceil(left - EDGE_EPS)))
            last = min(cols - 1, int(np.floor(right + EDGE_EPS)))
            row_x = coeffs[f, 1, 0] * y + coeffs[f, 2, 0]
            row_y = coeffs[f, 1, 1] * y + coeffs[f, 2, 1]
            for x in range(first, last + 1):
                map_x[y, x] = coeffs[f, 0, 0] * x + row_x
                map_y[y, x] = coeffs[f, 0, 1] * x + row_y


def load_compiled() -> None:
    """Load the compiled loop (from Numba's disk cache, or compiling it) with a call on a tiny grid: 0.2-0.4 s
    the first time in a process, which a caller can spend on another thread before frames are drawn."""
    grid = np.zeros((2, 2), np.float32)
    fill_affine_maps(
        np.zeros((1, 3, 2)), np.zeros((1, 3, 2)), np.zeros(1, np.int64), np.zeros((3, 2)), grid, grid.copy()
    )


def triangle_maps(triangles: np.ndarray, sources: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (shape) that take each triangle (F, 3, 2) of the output, in order, from its triangle in the
    source (F, 3, 2); degenerate triangles are skipped, and pixels no triangle covers (an anti-aliased rim) take the
    middle triangle's mapping. An empty pair when every triangle is degenerate."""
    corners = np.concatenate([triangles, np.ones(triangles.shape[:2] + (1,))], axis=2)  # (F, 3, 3)
    keep = np.flatnonzero(np.abs(np.linalg.det(corners)) / 2 > 0.05)
    if not len(keep):
        return np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)
    coeffs = np.zeros((len(triangles), 3, 2))
    coeffs[keep] = np.linalg.solve(corners[keep], sources[keep])  # [x, y, 1] @ coeffs[f] = source xy
    map_x, map_y = np.empty(shape, np.float32), np.empty(shape, np.float32)
    fill_affine_maps(
        np.ascontiguousarray(triangles, np.float64),
        coeffs,
        keep.astype(np.int64),
        coeffs[keep[len(keep) // 2]],
        map_x,
        map_y,
    )
    return map_x, map_y
