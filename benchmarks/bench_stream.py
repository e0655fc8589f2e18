"""Real-time streaming benchmark: speech fed in real time in 20 ms chunks to 1..N concurrent live sessions.

    python benchmarks/bench_stream.py [--seconds 30] [--sessions 1,2] [--steps 10] [--low-latency] [--audio FILE]
                                      [--background-load N]

For each number of sessions it reports: latency from an audio chunk's arrival to the frame that shows its end
(p50/p95), sustained frames per second per session, frames that fell behind real time by more than 0.5 s
("late": a client showing them in time would drop them), the drift between the audio clock and the frames at
the end, process CPU use (cores) and peak memory, and each stage's compute per second of video. Frames are
JPEG-encoded as the server sends them. Pictures skipped: frames sent with the previous picture because they were
too late to be live (their audio still on time); "pictures/s" is what a viewer sees.

Each stage's cost per frame is also printed in remaps: multiples of one full-frame 512² cv2.remap timed in the
same run, figures that hold from one machine to another. --background-load N runs N busy processes beside the
sessions, as another program on the machine would.
"""

import argparse
import multiprocessing
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import skimage.data

from openvasa.io.media import load_audio
from openvasa.pipeline import prepare_portrait
from openvasa.render.speed import cpu_name, remap_seconds
from openvasa.stream.connection import frame_message
from openvasa.stream.realtime import LiveSession
from openvasa.stream.session import StreamFrame, TalkingSession

DEFAULT_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "mimictalk_German_20s.mp4"
CHUNK_S = 0.02
LATE_S = 0.5


def run(n_sessions: int, seconds: float, audio: np.ndarray, steps: int = 10, low_latency: bool = False) -> dict:
    portrait = prepare_portrait(skimage.data.astronaut())
    audio = np.tile(audio, int(np.ceil(seconds * 16000 / len(audio))))[: int(seconds * 16000)]
    pcm = (audio * 32767).astype(np.int16)
    received: list[list[tuple[int, float]]] = [[] for _ in range(n_sessions)]
    encode_s = [0.0] * n_sessions

    def sink(k: int):
        def on_frame(frame: StreamFrame) -> None:
            started = time.perf_counter()
            frame_message(frame, frame.audio, with_image=True)  # the JPEG encoding a server does
            encode_s[k] += time.perf_counter() - started
            received[k].append((frame.index, time.monotonic()))

        return on_frame

    lives = [
        LiveSession(TalkingSession(portrait, steps=steps, low_latency=low_latency), sink(k)) for k in range(n_sessions)
    ]
    cpu_start, wall_start = time.process_time(), time.monotonic()
    for live in lives:
        live.start()
    chunk = int(CHUNK_S * 16000)

    def feed(live: LiveSession) -> None:
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), chunk)):
            live.push_audio(pcm[at : at + chunk], 16000)
            time.sleep(max(0.0, start + (i + 1) * CHUNK_S - time.monotonic()))

    feeders = [threading.Thread(target=feed, args=(live,)) for live in lives]
    for f in feeders:
        f.start()
    for f in feeders:
        f.join()
    time.sleep(0.6)  # the last block's look-ahead and compute
    wall = time.monotonic() - wall_start
    cpu = time.process_time() - cpu_start
    for live in lives:
        live.close()
    rows = []
    for live, frames in zip(lives, received, strict=True):
        summary = live.stats.summary()
        started = live.stats.started
        lateness = np.array([t - (started + index / 25.0) for index, t in frames])
        rows.append(
            {
                "p50": summary["latency_p50_ms"],
                "p95": summary["latency_p95_ms"],
                "fps": len(frames) / wall,
                "late": int(np.sum(lateness - np.median(lateness[: max(1, len(lateness) // 10)]) > LATE_S)),
                "drift_s": float(lateness[-1] - np.median(lateness[: max(1, len(lateness) // 10)]))
                if len(frames)
                else 0.0,
                "frames": len(frames),
                "skipped": live.stats.skipped_pictures,
                "error": repr(live.error) if live.error else "",
            }
        )
    return {
        "sessions": n_sessions,
        "latency_p50_ms": float(np.mean([r["p50"] for r in rows])),
        "latency_p95_ms": float(np.max([r["p95"] for r in rows])),
        "fps_per_session": float(np.mean([r["fps"] for r in rows])),
        "pictures_per_s": float(np.mean([r["fps"] * (1 - r["skipped"] / max(1, r["frames"])) for r in rows])),
        "skipped_pictures": sum(r["skipped"] for r in rows),
        "late_frames": sum(r["late"] for r in rows),
        "drift_s": float(np.max([abs(r["drift_s"]) for r in rows])),
        "cpu_cores": cpu / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "errors": [r["error"] for r in rows if r["error"]],
        "stage_ms_per_s": {  # compute per second of video, averaged over the sessions
            "features": 1000 * np.mean([live.session.stats.features_s for live in lives]) / seconds,
            "motion": 1000 * np.mean([live.session.stats.motion_s for live in lives]) / seconds,
            "render": 1000 * np.mean([live.session.stats.render_s for live in lives]) / seconds,
            "jpeg": 1000 * np.mean(encode_s) / seconds,
        },
    }


def _busy() -> None:
    while True:
        pass


@contextmanager
def background_load(n: int) -> Iterator[None]:
    """n busy processes beside the benchmark, as other programs on the machine would be."""
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(n)]
    for process in busy:
        process.start()
    try:
        yield
    finally:
        for process in busy:
            process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sessions", default="1,2")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per block (default 10)")
    parser.add_argument("--low-latency", action="store_true", help="1-frame blocks (the low-latency motion model)")
    parser.add_argument("--background-load", type=int, default=0, help="busy processes beside the sessions")
    args = parser.parse_args()
    audio = load_audio(args.audio)
    remap_ms = 1000 * remap_seconds()
    print(f"CPU: {cpu_name()}; one 512² cv2.remap: {remap_ms:.2f} ms; background load: {args.background_load}")
    print(
        "| sessions | latency p50 (ms) | latency p95 (ms) | fps per session | pictures/s | pictures skipped "
        "| late frames | drift (s) | CPU cores | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with background_load(args.background_load):
        for n in (int(s) for s in args.sessions.split(",")):
            r = run(n, args.seconds, audio, args.steps, args.low_latency)
            print(
                f"| {n} | {r['latency_p50_ms']:.0f} | {r['latency_p95_ms']:.0f} | {r['fps_per_session']:.1f} | "
                f"{r['pictures_per_s']:.1f} | {r['skipped_pictures']} | {r['late_frames']} | {r['drift_s']:+.2f} | "
                f"{r['cpu_cores']:.2f} | {r['peak_rss_mb']:.0f} |",
                flush=True,
            )
            stages = r["stage_ms_per_s"]
            per_frame = {k: v / 25.0 for k, v in stages.items()}
            print("  compute per second of video (ms):", {k: round(v) for k, v in stages.items()}, flush=True)
            print(
                "  per frame in remaps:",
                {k: round(float(v) / remap_ms, 1) for k, v in per_frame.items()},
                f"total {sum(per_frame.values()) / remap_ms:.1f}",
                flush=True,
            )
            if r["errors"]:
                print("errors:", r["errors"])


if __name__ == "__main__":
    main()
