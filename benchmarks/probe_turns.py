"""How far generated heads turn away from the camera on turned portraits, and the frame turned furthest out.

    .venv/bin/python benchmarks/probe_turns.py [--portraits ../shared/data/portraits] [--min-yaw 22] [--out out/turns]

Every portrait whose face is turned at least --min-yaw degrees is driven by the first 12 s of each --audio, with
each seed, by the shipped offline model. Per generation: the yaw of the portrait (its reference pose), the mean yaw
relative to it and the furthest turn away from the camera (outward: the side the portrait is already turned to),
in degrees. The frame turned furthest out with the first audio and seed is rendered to --out, for a viewer to
check the far cheek and the nose. Writes --out/turns.md.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from openvasa.errors import OpenVasaError
from openvasa.face.latent import YAW, FaceBasis, FaceLatentCodec
from openvasa.io.media import load_audio
from openvasa.motion.generator import load_generator
from openvasa.pipeline import Portrait, prepare_portrait, render_latents
from openvasa.units import SAMPLE_RATE

IMAGES = (".jpg", ".jpeg", ".png", ".webp")


def turned_portraits(folder: Path, min_yaw: float, codec: FaceLatentCodec) -> list[tuple[str, Portrait, float]]:
    """(name, portrait, yaw in degrees) of the portraits in `folder` turned at least min_yaw degrees."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES):
        try:
            portrait = prepare_portrait(path, codec=codec)
        except OpenVasaError as error:  # no face found: not what this probe is about
            print(f"{path.name}: skipped ({error})")
            continue
        yaw = float(np.degrees(portrait.identity.reference.pose[0, YAW]))
        if abs(yaw) >= min_yaw:
            found.append((path.name, portrait, yaw))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portraits", type=Path, default=Path("../shared/data/portraits"))
    parser.add_argument("--min-yaw", type=float, default=22.0, help="degrees; the portraits turned at least this far")
    parser.add_argument(
        "--audio",
        type=Path,
        nargs="+",
        default=[
            Path("../shared/data/audio/anitalker_english_female.wav"),
            Path("../shared/data/audio/aaai22_obama2.wav"),
        ],
    )
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/turns"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    generator, basis, codec = load_generator(), FaceBasis.load(), FaceLatentCodec()
    voices = [load_audio(a)[: 12 * SAMPLE_RATE] for a in args.audio]
    rows = ["| portrait | yaw | mean yaw, relative | furthest out | frame |", "|---|---|---|---|---|"]
    outward_all = []
    for name, portrait, yaw in turned_portraits(args.portraits, args.min_yaw, codec):
        reference, side = portrait.identity.reference, np.sign(yaw)
        means, outward, shown = [], [], ""
        for v, voice in enumerate(voices):
            for seed in range(args.seeds):
                latent = generator.generate(voice, 25.0, reference, basis, seed=seed)
                relative = np.degrees(latent.pose[:, YAW] - reference.pose[0, YAW])
                furthest = int(np.argmax(side * relative))
                means.append(relative.mean())
                outward.append(side * relative[furthest])
                if v == 0 and seed == 0:
                    frame = next(render_latents(portrait, latent[furthest : furthest + 1], codec, threads=1))
                    shown = f"{Path(name).stem}_{furthest}.png"
                    cv2.imwrite(str(args.out / shown), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        outward_all += outward
        rows.append(
            f"| {name} | {yaw:+.1f} | {np.mean(means):+.1f} | {max(outward):+.1f} (mean {np.mean(outward):+.1f}) "
            f"| {shown} |"
        )
        print(rows[-1], flush=True)
    rows.append(
        f"\nfurthest turn out over all generations: mean {np.mean(outward_all):+.1f}, max {max(outward_all):+.1f}"
    )
    (args.out / "turns.md").write_text("\n".join(rows) + "\n")
    print(rows[-1])


if __name__ == "__main__":
    main()
