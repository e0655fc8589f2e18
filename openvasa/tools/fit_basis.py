"""Fit the shipped FaceBasis on real talking videos (training identities only).

    python -m openvasa.tools.fit_basis --videos ../shared/data/videos --out openvasa/assets/face_basis.npz

Steps: track landmarks in every clip; generalised Procrustes on rigid points gives a frontal canonical
mean; within each clip, canonical changes are regressed on measured eye state (the eye basis), and PCA of
what is left gives the dynamics basis. Within-clip changes are used so that identity never leaks into
expression.
"""

import argparse
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from openvasa.face import landmarks as lm
from openvasa.face.geometry import fit_similarity
from openvasa.face.latent import (
    FaceBasis,
    fit_pose,
    measure_eyes,
    mirror_permutation,
    mirror_points,
    to_canonical,
)
from openvasa.face.track import track_frames
from openvasa.io.media import read_video

log = logging.getLogger(__name__)


@dataclass
class ClipLandmarks:
    name: str
    identity: str
    landmarks: np.ndarray  # (T, 478, 3) px in the clip's 512 framing, tracked frames only


def identity_of_clip(manifest: Path, name: str) -> str:
    """The `identity=` tag of a clip in MANIFEST.tsv, or the file stem when absent."""
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            cols = line.split("\t")
            if cols[0].endswith("/" + name) and "identity=" in cols[-1]:
                return cols[-1].split("identity=")[1].split(";")[0].strip()
    return Path(name).stem


def validation_identities() -> set[str]:
    split = json.loads((resources.files("openvasa") / "assets" / "split.json").read_text())
    return set(split["validation_identities"])


def track_clips(video_dir: Path, cache: Path | None = None) -> list[ClipLandmarks]:
    """Tracked landmarks of every clip in video_dir (cached in an npz keyed by file name)."""
    cached = dict(np.load(cache)) if cache and cache.exists() else {}
    clips = []
    for path in sorted(video_dir.glob("*.mp4")):
        if path.name not in cached:
            log.info("tracking %s", path.name)
            tracked = track_frames(read_video(path).frames, keep_frames=False)
            cached[path.name] = tracked.landmarks[tracked.valid]
        identity = identity_of_clip(video_dir.parent / "MANIFEST.tsv", path.name)
        clips.append(ClipLandmarks(path.name, identity, cached[path.name].astype(np.float64)))
    if cache:
        np.savez_compressed(cache, **cached)
    return clips


def frontal_mean(points: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Generalised Procrustes mean of (N, 478, 3) shapes, turned frontal: the line between mirrored
    points is the x axis, forehead-to-chin is y; unit outer-eye distance; rigid centroid at the origin."""
    rigid = list(lm.RIGID)
    ref = points[0].copy()
    for _ in range(iterations):
        aligned = []
        for shape in points:
            s, rot, t = fit_similarity(shape[rigid], ref[rigid])
            aligned.append(shape @ (s * rot).T + t)
        ref = np.mean(aligned, 0)
    right, left = (np.array(side) for side in zip(*lm.SYMMETRIC_PAIRS, strict=True))
    x_axis = (ref[left] - ref[right]).mean(0)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = ref[lm.CHIN] - ref[lm.FOREHEAD_TOP]
    y_axis -= x_axis * (y_axis @ x_axis)
    y_axis /= np.linalg.norm(y_axis)
    frame = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])
    ref = (ref - ref[rigid].mean(0)) @ frame.T
    return ref / np.linalg.norm(ref[33, :2] - ref[263, :2])


def eye_region(mean: np.ndarray, radius: float = 0.3) -> np.ndarray:
    """(478,) bool: points within `radius` eye distances of either eye centre in the canonical mean."""
    mask = np.zeros(len(mean), bool)
    for a, b in (lm.RIGHT_EYE_CORNERS, lm.LEFT_EYE_CORNERS):
        centre = (mean[a] + mean[b]) / 2
        mask |= np.linalg.norm(mean[:, :2] - centre[:2], axis=1) < radius
    return mask


def _calibrate_eye_basis(eye_basis: np.ndarray, mean: np.ndarray, step: float = 0.01) -> np.ndarray:
    """Rescale the eye basis so decoding reproduces the eye measures it is given (a regression on noisy
    tracks under-shoots: commanded blinks would not quite close)."""
    base = measure_eyes(mean[None])[0]
    jacobian = np.stack(
        [(measure_eyes((mean + step * col.reshape(mean.shape))[None])[0] - base) / step for col in eye_basis.T], 1
    )
    return eye_basis @ np.linalg.inv(jacobian)


def fit_basis(clips: list[ClipLandmarks], n_dynamics: int = 40, stride: int = 2) -> tuple[FaceBasis, dict]:
    """Fit a FaceBasis on clips and their mirror images (so that the basis is mirror-symmetric and flipping
    is an exact augmentation); returns it with a report of explained variance."""
    sample = np.concatenate([c.landmarks[:: max(1, len(c.landmarks) // 40)] for c in clips])
    permutation = mirror_permutation(frontal_mean(sample))
    width = 512.0  # any width: mirrored clips are only ever compared with themselves
    clips = clips + [ClipLandmarks(c.name, c.identity, mirror_points(c.landmarks, width, permutation)) for c in clips]
    sample = np.concatenate([sample, mirror_points(sample, width, permutation)])
    mean = frontal_mean(sample)
    provisional = FaceBasis(mean, np.zeros((mean.size, 6)), np.zeros(6), np.zeros((mean.size, 0)), np.zeros(0), 0)
    d_canon, d_eyes, eyes_all, clip_means = [], [], [], []
    for clip in clips:
        pts = clip.landmarks[::stride]
        canonical = to_canonical(pts, fit_pose(pts, provisional))
        eyes = measure_eyes(canonical)
        centre = np.median(canonical, 0)
        d_canon.append((canonical - centre).reshape(len(pts), -1))
        d_eyes.append(eyes - eyes.mean(0))
        eyes_all.append(eyes)
        clip_means.append(centre)
    dc, de = np.concatenate(d_canon), np.concatenate(d_eyes)
    # Eye state may only move points around the eyes: elsewhere blinks and gaze correlate with speech by
    # chance, and a global regression would make every blink move the lips.
    near_eyes = np.repeat(eye_region(mean), 3)
    eye_basis = np.zeros((dc.shape[1], de.shape[1]))
    eye_basis[near_eyes] = np.linalg.lstsq(de, dc[:, near_eyes], rcond=None)[0].T  # (1434, 6)
    eye_basis = _calibrate_eye_basis(eye_basis, mean)
    residual = dc - de @ eye_basis.T
    residual -= residual.mean(0)
    _, sing, vt = np.linalg.svd(residual, full_matrices=False)
    var = sing**2 / len(residual)
    basis = FaceBasis(
        mean=mean,
        eye_basis=eye_basis,
        eye_mean=np.concatenate(eyes_all).mean(0),
        dynamics_basis=vt[:n_dynamics].T,
        dynamics_var=var[:n_dynamics],
        identity_var=float(np.var(np.stack(clip_means) - mean)),
    )
    report = {
        "frames": int(len(dc)),
        "clips": len(clips),
        "explained_variance": float(var[:n_dynamics].sum() / var.sum()),
        "eye_r2": float(1 - residual.var(0).sum() / dc.var(0).sum()),
    }
    return basis, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("out/tracked_landmarks.npz"))
    parser.add_argument("--n-dynamics", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    val = validation_identities()
    clips = [c for c in track_clips(args.videos, args.cache) if c.identity not in val]
    basis, report = fit_basis(clips, args.n_dynamics)
    basis.save(args.out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
