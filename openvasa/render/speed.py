"""Speed in units that travel between machines: one full-frame 512x512 `cv2.remap` (bilinear, 3 channels), the
physical floor of a warp, timed in the same run. A stage costing 10 remaps costs 10 remaps on a fast laptop and
on a slow cloud vCPU alike, where milliseconds differ 2-3x."""

import platform
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from openvasa.face.detect import FRAME_SIZE


def remap_seconds(repeats: int = 200) -> float:
    """Median seconds of one full-frame FRAME_SIZE² bilinear cv2.remap of an RGB image, with OpenCV's own
    threads as the renderer uses them."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    grid = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float32)
    map_x, map_y = grid[1] + 0.3, grid[0] - 0.2  # sub-pixel: a real interpolation everywhere
    for _ in range(20):  # warm-up: caches, OpenCV's thread pool
        cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    times = []
    for _ in range(repeats):
        start = perf_counter()
        cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        times.append(perf_counter() - start)
    return float(np.median(times))


def cpu_name() -> str:
    """The CPU's model name, as benchmarks report it next to milliseconds."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
