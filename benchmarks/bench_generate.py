"""Offline generation as a user runs it: `openvasa generate` in a new process, start-up included.

    python benchmarks/bench_generate.py [--seconds 20] [--runs 3] [--background-load N]

Writes the astronaut portrait and N seconds of speech to a temporary folder, then times, each in a fresh process:
`openvasa --help` (start-up alone) and `openvasa generate` (imports, face analysis, audio features, motion,
drawing and encoding, the mp4 written). Prints the wall time, the real-time factor and the wall time per frame in
milliseconds and in remaps (one full-frame 512² cv2.remap timed just before each run: figures that hold between
machines).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import soundfile

from openvasa.audio.features import n_frames_for
from openvasa.render.speed import cpu_name, remap_seconds
from openvasa.units import SAMPLE_RATE

sys.path.insert(0, str(Path(__file__).parent))
from bench_motion import speech  # noqa: E402
from bench_stream import background_load  # noqa: E402

OPENVASA = [sys.executable, "-m", "openvasa.cli"]


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--background-load", type=int, default=0, help="busy processes beside the generation")
    args = parser.parse_args()
    frames = n_frames_for(int(args.seconds * SAMPLE_RATE), 25.0, SAMPLE_RATE)
    print(f"CPU: {cpu_name()}; {args.seconds:.0f} s of speech, {frames} frames")
    with background_load(args.background_load), tempfile.TemporaryDirectory() as tmp:
        image, audio, video = Path(tmp) / "portrait.png", Path(tmp) / "speech.wav", Path(tmp) / "out.mp4"
        cv2.imwrite(str(image), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
        soundfile.write(audio, speech(args.seconds), SAMPLE_RATE)
        wall([*OPENVASA, "generate", "--image", str(image), "--audio", str(audio), "-o", str(video)])  # warm caches
        help_s = min(wall([*OPENVASA, "--help"]) for _ in range(args.runs))
        runs, remaps = [], []
        for _ in range(args.runs):  # the remap timed again before each run: this machine's speed drifts
            remaps.append(remap_seconds())
            runs.append(wall([*OPENVASA, "generate", "--image", str(image), "--audio", str(audio), "-o", str(video)]))
    ratios = np.array(runs) / np.array(remaps) / frames
    print(f"one remap before each run: {', '.join(f'{1000 * r:.2f}' for r in remaps)} ms")
    for label, pick in (("best", int(np.argmin(ratios))), ("median", int(np.argsort(ratios)[len(ratios) // 2]))):
        seconds = runs[pick]
        per_frame = 1000 * seconds / frames
        print(
            f"generate ({label} of {args.runs}): {seconds:.2f} s, RTF {seconds / args.seconds:.2f}, "
            f"{per_frame:.1f} ms = {ratios[pick]:.1f} remaps a frame"
        )
    print(f"openvasa --help (start-up alone): {help_s:.2f} s")


if __name__ == "__main__":
    main()
