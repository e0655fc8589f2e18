"""Fit the baseline's mouth model (openvasa.motion.baseline.MouthModel) on the training identities' real clips:

    python -m openvasa.tools.fit_mouth [--videos DIR] [--cache NPZ] [--out NPZ]

(defaults: ../shared/data/videos, the landmark cache out/tracked_landmarks.npz of the basis fit, and the shipped
openvasa/assets/baseline_mouth.npz). Refit after refitting the face basis.
"""

import argparse
import json
from importlib import resources
from pathlib import Path

import numpy as np

from openvasa.audio.features import frame_energy_features
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis, FaceLatentCodec, to_canonical
from openvasa.io.media import load_audio, video_fps
from openvasa.motion.baseline import MOUTH_FILE, MouthModel, basis_check, mouth_drives
from openvasa.tools.fit_basis import ClipLandmarks, track_clips, validation_identities


def fit_mouth_model(
    clips: list[ClipLandmarks], video_dir: Path, basis: FaceBasis
) -> tuple[MouthModel, dict[str, float]]:
    """Fit the mouth directions and gains on real talking clips; returns them with a report.

    Directions: least squares of within-clip-centred dynamics codes on within-clip-centred inner-lip
    opening and mouth width (eye distances), so each direction moves its measure by one unit and leaves
    the other. Opening gain: the median, over clips, of the opening range (95th - 5th percentile) over
    the 95th percentile of the opening drive, so lips move as far as real ones. Rounding gain: the
    pooled within-clip regression slope of width on the rounding drive (with the opening drive).
    """
    codec = FaceLatentCodec(basis)
    measures, codes, drives, gains, open_r, round_r = [], [], [], [], [], []
    for clip in clips:
        latent = codec.encode(clip.landmarks)
        canonical = to_canonical(clip.landmarks, latent.pose)
        width = np.linalg.norm(canonical[:, 61, :2] - canonical[:, 291, :2], axis=-1)
        measure = np.stack([lm.mouth_opening(canonical), width / lm.eye_distance(canonical)], axis=1)
        fps = video_fps(video_dir / clip.name)
        drive = np.stack(mouth_drives(frame_energy_features(load_audio(video_dir / clip.name), fps), fps), 1)
        # Tracking may have dropped a frame or two at the end.
        t = min(len(measure), len(drive))
        measure, drive, code = measure[:t], drive[:t], latent.dynamics[:t]
        measures.append(measure - measure.mean(0))
        codes.append(code - code.mean(0))
        drives.append(drive - drive.mean(0))
        opening_range = np.percentile(measure[:, 0], 95) - np.percentile(measure[:, 0], 5)
        gains.append(opening_range / np.percentile(drive[:, 0], 95))
        open_r.append(np.corrcoef(drive[:, 0], measure[:, 0])[0, 1])
        round_r.append(np.corrcoef(drive[:, 1], measure[:, 1])[0, 1])
    x, y, d = np.concatenate(measures), np.concatenate(codes), np.concatenate(drives)
    directions = np.linalg.lstsq(x, y, rcond=None)[0]
    width_slopes = np.linalg.lstsq(d, x[:, 1], rcond=None)[0]
    model = MouthModel(
        open_dir=directions[0],
        round_dir=-directions[1],
        open_gain=float(np.median(gains)),
        round_gain=float(max(0.0, -width_slopes[1])),
        basis_check=basis_check(basis),
    )
    report = {
        "clips": len(clips),
        "frames": len(x),
        "codes_r2": float(1 - ((y - x @ directions) ** 2).sum() / (y**2).sum()),
        "open_gain": model.open_gain,
        "round_gain": model.round_gain,
        "median_r_opening_drive": float(np.median(open_r)),
        "median_r_width_rounding_drive": float(np.median(round_r)),
    }
    return model, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--cache", type=Path, default=Path("out/tracked_landmarks.npz"))
    parser.add_argument("--out", type=Path, default=Path(str(resources.files("openvasa") / "assets" / MOUTH_FILE)))
    args = parser.parse_args()
    validation = validation_identities()
    clips = [c for c in track_clips(args.videos, args.cache) if c.identity not in validation]
    model, report = fit_mouth_model(clips, args.videos, FaceBasis.load())
    model.save(args.out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
