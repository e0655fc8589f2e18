"""Which of the blinks the model draws are seen after rendering: an `openvasa eval` run's videos re-detected, frame
by frame against the motion it rendered (regenerated with the run's seed, as the suite generates it).

    .venv/bin/python benchmarks/probe_blinks_seen.py out/eval_X_seed0 [--seed 0] [--videos ../shared/data/videos]

Per clip: the blinks drawn (onsets of the generated eye openness below half of the portrait's), those re-detected
within 2 frames of one, and the re-detected onsets with no drawn blink near; with --show, both openness tracks as
characters (# below half open, + below 0.7, . above).
"""

import argparse
from pathlib import Path

import numpy as np

from openvasa.audio.phonetics import lip_closures
from openvasa.data.tracking import timed_frames
from openvasa.eval.suite import FPS, EvalConfig, eval_clips, frames_at, generated_latents, measure, model_name
from openvasa.face import landmarks as lm
from openvasa.face.latent import EYE_OPEN, FaceLatentCodec
from openvasa.motion.blinks import BLINK_FRACTION
from openvasa.pipeline import Portrait, prepare_portrait

NEAR = 2  # frames


def onsets(openness: np.ndarray) -> np.ndarray:
    closed = openness < BLINK_FRACTION
    return np.flatnonzero(closed & ~np.concatenate([[False], closed[:-1]]))


def track(openness: np.ndarray) -> str:
    return "".join("#" if v < BLINK_FRACTION else "+" if v < 0.7 else "." for v in openness)


def redetected_openness(video: Path, portrait: Portrait, codec: FaceLatentCodec) -> np.ndarray:
    """(T,) mean eye openness of the video's frames, re-detected as the suite measures them, over its median."""
    measured = measure((frame for _, frame in timed_frames(video)), portrait, codec, identity_every=10**9)
    eyes = np.array([lm.eye_openness(points) for points in measured.landmarks])
    return (eyes / np.median(eyes, 0)).mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="an `openvasa eval` output folder (its prep/ and videos/)")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed")
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    config = EvalConfig(
        videos=args.videos, out=args.run, prep=args.run / "prep", split=args.split, steps=(10,), seed=args.seed
    )
    codec = FaceLatentCodec()
    totals = np.zeros(3, int)
    print("| clip | drawn | seen | seen with none drawn |\n|---|---|---|---|")
    for clip in eval_clips(config):
        portrait = prepare_portrait(next(frames_at(clip.video, np.array([clip.start_s]))), codec=codec)
        methods = generated_latents(portrait, clip, codec, config, lip_closures(clip.audio, FPS))
        latent = next(latent for name, latent, _ in methods if name == model_name(10))
        drawn = (latent.eyes[:, EYE_OPEN] / portrait.identity.reference.eyes[0, EYE_OPEN]).mean(1)
        seen = redetected_openness(args.run / "videos" / f"{clip.name}.mp4", portrait, codec)[: len(drawn)]
        blinks, seen_onsets = onsets(drawn), onsets(seen)
        hits = sum(np.any(np.abs(seen_onsets - b) <= NEAR) for b in blinks)
        extra = sum(not np.any(np.abs(blinks - s) <= NEAR) for s in seen_onsets)
        totals += [len(blinks), hits, extra]
        print(f"| {clip.name} | {len(blinks)} | {hits} | {extra} |")
        if args.show:
            print(f"  drawn {track(drawn)}\n  seen  {track(seen)}")
    print(f"| all | {totals[0]} | {totals[1]} | {totals[2]} |")


if __name__ == "__main__":
    main()
