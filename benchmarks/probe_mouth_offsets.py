"""The mouth regression alone (openvasa.motion.mouth_regression) on people it was not fitted on, with the training
clips' mouths at their recorded audio-video offsets or at their own (mouth_regression.clip_offsets), over the
number of the audio encoder's principal components and the ridge.

    .venv/bin/python benchmarks/probe_mouth_offsets.py [--index out/prep37/index.json] [--live]

Prints, per setting, the mean correlation of the predicted opening and width with the real ones (each about its
running mean, at lag 0, against the mouth as recorded): over the training people each left out of the fit, and on
the validation people with the fit on every training clip. Features are the prep shards' (whisper-tiny and energy).
--live: the live models' taps, ending at the frame.
"""

import argparse
from pathlib import Path

import numpy as np

from openvasa.data.loader import split_shards
from openvasa.face.latent import FaceBasis, FaceLatent, mouth_opening, mouth_width
from openvasa.face.track import gaussian_smooth
from openvasa.motion.mouth_regression import LEVEL_SIGMA, MouthRegression, clip_offsets, delayed, fit_taps
from openvasa.tools.calibrate import LIVE_FIRST_TAP, MAX_OFFSET, MOUTH_DIMS, MOUTH_FIRST_TAP, MOUTH_RIDGE, MOUTH_TAPS

FEATURES = ("features_whisper-tiny", "features_energy")


def load(index: Path, split: str, basis: FaceBasis) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(person, audio features (T, A), opening and width (T, 2)) of each shard of the split."""
    clips = []
    for shard, z in split_shards(index, split):
        latent = FaceLatent(*(z[k].astype(np.float64) for k in ("pose", "eyes", "dynamics")))
        neutral = z["neutral"].astype(np.float64)
        mouth = np.stack([mouth_opening(latent, neutral, basis), mouth_width(latent, neutral, basis)], 1)
        clips.append((shard["identity"], np.concatenate([z[k] for k in FEATURES], 1).astype(np.float64), mouth))
    return clips


def correlations(taps: np.ndarray, first: int, clips: list[tuple[str, np.ndarray, np.ndarray]]) -> np.ndarray:
    """(2,) mean correlation of the regression's opening and width with the clips' as recorded (both about their
    running means)."""
    regression = MouthRegression(taps, first, np.zeros((1, 2)), np.zeros((2, 1)), 0.0)
    rs = []
    for _, features, mouth in clips:
        predicted, measured = regression.predict(features), mouth - gaussian_smooth(mouth, LEVEL_SIGMA)
        rs.append([np.corrcoef(predicted[:, k], measured[:, k])[0, 1] for k in range(2)])
    return np.mean(rs, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("out/prep37/index.json"))
    parser.add_argument("--live", action="store_true")
    args = parser.parse_args()
    basis = FaceBasis.load()
    train, val = load(args.index, "train", basis), load(args.index, "val", basis)
    first = LIVE_FIRST_TAP if args.live else MOUTH_FIRST_TAP
    features, people = [c[1] for c in train], [c[0] for c in train]
    print(
        f"{len(train)} training clips ({len(set(people))} people), {len(val)} validation clips; taps from t{first:+d}"
    )
    print("| offsets | components | ridge | training people, each left out (opening, width) | validation people |")
    print("|---|---|---|---|---|")
    for max_offset in (0, MAX_OFFSET):
        offsets = clip_offsets(
            features, [c[2] for c in train], people, MOUTH_FIRST_TAP, MOUTH_TAPS, MOUTH_DIMS, MOUTH_RIDGE, max_offset
        )
        mouths = [delayed(c[2], o) for c, o in zip(train, offsets, strict=True)]
        for dims in (64, 128, 192):
            for ridge in (1e4, 3e4, 1e5):
                left_out = []
                for person in sorted(set(people)):
                    fitted = [i for i, p in enumerate(people) if p != person]
                    taps = fit_taps(
                        [features[i] for i in fitted], [mouths[i] for i in fitted], first, MOUTH_TAPS, dims, ridge
                    )
                    left_out += [correlations(taps, first, [c]) for c in train if c[0] == person]
                taps = fit_taps(features, mouths, first, MOUTH_TAPS, dims, ridge)
                kind = f"own (within {max_offset})" if max_offset else "recorded"
                print(
                    f"| {kind} | {dims} | {ridge:.0e} | {np.round(np.mean(left_out, 0), 3).tolist()} | "
                    f"{np.round(correlations(taps, first, val), 3).tolist()} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
