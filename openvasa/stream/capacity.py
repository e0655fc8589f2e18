"""How many live sessions this machine holds: one session's cost measured here, and the sessions that fit."""

import os
import threading
import time

import numpy as np

from openvasa.errors import OpenVasaError
from openvasa.pipeline import Portrait
from openvasa.stream.connection import frame_message
from openvasa.stream.realtime import LiveSession, ManualClock
from openvasa.stream.session import SUPPORTED_RATES, StreamFrame, TalkingSession
from openvasa.units import FPS


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_cost(portrait: Portrait, steps: int = 10, seconds: float = 3.0) -> float:
    """Seconds of compute a default live session spends per frame on this machine: features, motion, drawing and
    JPEG, measured by running one (on its own thread, single-threaded as live sessions run) over `seconds` of
    speech-like sound pushed at once, after one second that loads the models; its clock does not move, so no
    silence is added."""
    rate = SUPPORTED_RATES[1]
    t = np.arange(int((1 + seconds) * rate)) / rate
    sound = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32)  # syllables
    frames: list[int] = []
    arrived = threading.Condition()

    def on_frame(frame: StreamFrame) -> None:
        frame_message(frame, frame.audio, with_image=True)
        with arrived:
            frames.append(frame.index)
            arrived.notify_all()

    def wait_for(n: int) -> None:
        with arrived:
            if not arrived.wait_for(lambda: len(frames) >= n, timeout=120):
                raise OpenVasaError("the live session made no frames while measuring this machine")

    live = LiveSession(TalkingSession(portrait, steps=steps), on_frame, clock=ManualClock()).start()
    try:
        live.push_audio(sound[:rate], rate)
        wait_for(20)  # 25 frames less the block and look-ahead still waiting for audio
        warm, started = len(frames), time.perf_counter()
        live.push_audio(sound[rate:], rate)
        wait_for(warm + int(seconds * 25))
        return (time.perf_counter() - started) / (len(frames) - warm)
    finally:
        live.close()


# Sessions slow each other down (one interpreter lock, shared caches): each session's frame cost grows by this share
# of one session's alone for every other session. benchmarks/bench_stream.py, 4-frame blocks: 14.3 remaps a frame
# alone, 17.6 with two, 27.2 with three; with 2-frame blocks two fit on 2 cores and three fell behind.
CONTENTION = 0.35


def sessions_that_fit(cost_per_frame_s: float, n_cores: int, fps: float = FPS) -> int:
    """Default live sessions this machine holds at `fps`: the most n whose frames, each costing one session's
    cost_per_frame_s grown by CONTENTION per other session, fit in 85% of the cores (the rest is left for the
    server, the network and the operating system); at least one."""
    load = lambda n: n * fps * cost_per_frame_s * (1 + CONTENTION * (n - 1))  # noqa: E731 (cores n sessions take)
    n = 1
    while load(n + 1) <= 0.85 * n_cores:
        n += 1
    return n
