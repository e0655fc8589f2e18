"""Small rigid-geometry helpers: similarity fitting and Euler angles.

Axes follow image pixels: x right, y down, z away from the camera (right-handed).
R = Rz(roll) @ Ry(yaw) @ Rx(pitch).
"""

import numpy as np


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares s, R, t with dst ~= s * R @ src + t (Umeyama). src, dst: (N, D), D = 2 or 3."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(xd.T @ xs)
    fix = np.eye(src.shape[1])
    fix[-1, -1] = np.sign(np.linalg.det(u @ vt))
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / (xs**2).sum())
    return scale, rot, mu_d - scale * rot @ mu_s


def euler_to_matrix(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Angles (...) in radians -> (..., 3, 3)."""
    yaw, pitch, roll = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (yaw, pitch, roll)))
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*yaw.shape, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*yaw.shape, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(*yaw.shape, 3, 3)
    return rz @ ry @ rx


def matrix_to_euler(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) as (yaw, pitch, roll) radians; inverse of euler_to_matrix for |yaw| < 90 deg."""
    yaw = np.arcsin(np.clip(-rot[..., 2, 0], -1, 1))
    pitch = np.arctan2(rot[..., 2, 1], rot[..., 2, 2])
    roll = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])
    return np.stack([yaw, pitch, roll], -1)
