"""Speed of the motion diffusion transformer and of audio-driven generation end to end, on this machine.

    python benchmarks/bench_motion.py [--seconds 20]

Prints frames of motion generated per second of compute at 10 and 50 sampling steps, and the real-time
factor (compute seconds / audio seconds) of `openvasa.generate` at 25 fps, 512x512, with the video encode.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data

from openvasa.audio.features import n_frames_for
from openvasa.face.latent import FaceLatentCodec
from openvasa.io.media import load_audio
from openvasa.motion.generator import load_generator
from openvasa.motion.settings import GenerationSettings
from openvasa.pipeline import generate, prepare_portrait
from openvasa.units import SAMPLE_RATE

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "aaai22_obama2.wav"


def speech(seconds: float) -> np.ndarray:
    """Real speech if the shared data is there, else a synthetic vowel-like signal."""
    if SPEECH.exists():
        audio = load_audio(SPEECH)
        return np.tile(audio, int(np.ceil(seconds * SAMPLE_RATE / len(audio))))[: int(seconds * SAMPLE_RATE)]
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    audio = speech(args.seconds)
    codec = FaceLatentCodec()
    portrait = prepare_portrait(skimage.data.astronaut(), codec=codec)
    generator = load_generator()
    frames = n_frames_for(len(audio), 25.0, SAMPLE_RATE)
    generator.frontend.features(audio[:SAMPLE_RATE], 25.0)  # loads the encoder
    features_start = time.perf_counter()
    generator.frontend.features(audio, 25.0)
    features_s = time.perf_counter() - features_start
    print(f"audio features ({generator.frontend.name}): {features_s / args.seconds * 1000:.1f} ms per audio second")
    for steps in (10, 50):
        settings = GenerationSettings(steps=steps)
        start = time.perf_counter()
        generator.generate(audio, 25.0, portrait.identity.reference, codec.basis, seed=0, settings=settings)
        elapsed = time.perf_counter() - start - features_s
        print(f"motion, {steps} steps: {frames / elapsed:.0f} frames/s ({frames / elapsed / 25:.1f}x real time)")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(skimage.data.astronaut(), audio, Path(tmp) / "bench.mp4")
        elapsed = time.perf_counter() - start
    print(
        f"end to end generate (analysis + features + motion + render + encode): RTF {elapsed / args.seconds:.2f} "
        f"({args.seconds / elapsed:.2f}x real time)"
    )


if __name__ == "__main__":
    main()
