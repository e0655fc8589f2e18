"""Speed of each stage at 512x512 on this machine: face analysis, latent encode/decode, render, encode.

    python benchmarks/bench_render.py [--frames 200]

Prints per-stage milliseconds, frames per second and cost in remaps (multiples of one full-frame 512² cv2.remap
timed in the same run: figures that hold between machines), and the render target ratio (fps / 40).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data

from openvasa.face.detect import FaceAnalyzer
from openvasa.face.latent import FaceLatentCodec
from openvasa.io.media import write_video
from openvasa.pipeline import prepare_portrait
from openvasa.render.speed import cpu_name, remap_seconds

RENDER_TARGET_FPS = 40.0


def timed(fn, repeats: int) -> float:
    """Mean seconds per call after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    n = args.frames
    image = skimage.data.astronaut()
    codec = FaceLatentCodec()
    portrait = prepare_portrait(image, codec=codec)

    # A moving sequence: head sway, mouth and blink changes around the portrait's own latent.
    t = np.arange(n) / 25.0
    latent = portrait.identity.reference.copy()
    latent = latent[np.zeros(n, int)]
    latent.pose[:, 0] += 0.08 * np.sin(2 * np.pi * 0.3 * t)
    latent.pose[:, 1] += 0.05 * np.sin(2 * np.pi * 0.2 * t)
    latent.pose[:, 6] *= 1 + 0.03 * np.sin(2 * np.pi * 0.1 * t)  # leaning in and out: the camera zoom path
    latent.dynamics[:, :3] += 0.3 * np.sin(2 * np.pi * 3 * t)[:, None]
    latent.eyes[:, :2] *= np.where((t % 4) < 0.2, 0.1, 1.0)[:, None]
    targets = codec.decode(latent, portrait.identity)

    results: dict[str, float] = {}
    with FaceAnalyzer(static=True) as analyzer:
        results["face analysis (detect + crop + FaceMesh, per portrait)"] = timed(
            lambda: analyzer.crop_portrait(image), 5
        )
    with FaceAnalyzer(static=False) as tracker:
        frame = portrait.crop.image
        results["landmark tracking (per video frame)"] = timed(lambda: tracker.landmarks(frame), 50)
    results["latent encode (per frame)"] = timed(lambda: codec.encode(targets), 3) / n
    results["latent decode (per frame)"] = timed(lambda: codec.decode(latent, portrait.identity), 3) / n
    i = iter(range(10**9))
    results["render (per frame)"] = timed(lambda: portrait.renderer.render(targets[next(i) % n]), n)
    frames = [portrait.renderer.render(targets[k]) for k in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        audio = np.zeros(int(n / 25 * 16000), np.float32)
        results["video encode H.264 + AAC (per frame)"] = (
            timed(lambda: write_video(Path(tmp) / "b.mp4", frames, 25.0, audio), 1) / n
        )

    remap = remap_seconds()
    print(f"CPU: {cpu_name()}; one 512² cv2.remap: {remap * 1000:.2f} ms")
    print(f"{'stage':58s} {'ms':>8s} {'fps':>8s} {'remaps':>8s}")
    for name, seconds in results.items():
        print(f"{name:58s} {seconds * 1000:8.2f} {1 / seconds:8.1f} {seconds / remap:8.1f}")
    render_fps = 1 / results["render (per frame)"]
    per_frame = sum(
        v for k, v in results.items() if "per frame" in k and "tracking" not in k and "encode (per" not in k
    )
    print(f"render fps / target {RENDER_TARGET_FPS:.0f}: {render_fps / RENDER_TARGET_FPS:.2f}")
    print(f"decode + render + video encode: {1 / per_frame:.1f} fps")


if __name__ == "__main__":
    main()
