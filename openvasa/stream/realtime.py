"""A TalkingSession on a clock: LiveSession runs it on its own thread, takes audio and commands from any
thread, fills silence when no audio arrives (so the face keeps listening instead of freezing), and hands each
frame to a callback. The server, the LiveKit and the Pipecat adapters all drive sessions through it.

The clock is injectable (any callable returning seconds): tests and replays drive a session with a ManualClock,
so what it does never depends on how fast the machine is; `step()` runs one turn of its loop on the caller's
thread.
"""

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from openvasa.stream.session import StreamFrame, TalkingSession
from openvasa.units import FPS, SAMPLE_RATE

log = logging.getLogger(__name__)

JITTER_S = 0.12  # audio may arrive this late before the session fills silence instead of waiting
# A frame whose picture, drawn now, would go out later after its audio arrived than its block's own wait (block and
# look-ahead) plus this margin is sent with the previous picture instead: a machine that cannot draw 25 pictures a
# second stays live (latency bounded, audio on time) at a lower picture rate, instead of falling further behind.
SKIP_MARGIN_S = 0.14

Clock = Callable[[], float]  # monotonic seconds


class ManualClock:
    """A clock that moves only when told to: live sessions driven by it behave the same on any machine."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class LiveStats:
    """Latency from an audio chunk's arrival to the frame that shows its end, and frame counts."""

    clock: Clock = time.monotonic
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    frames: int = 0
    speech_frames: int = 0
    skipped_pictures: int = 0  # frames sent with the previous picture: the machine could not keep up
    started: float = 0.0

    def summary(self) -> dict[str, float]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        elapsed = max(self.clock() - self.started, 1e-9)
        return {
            "frames": self.frames,
            "fps": self.frames / elapsed,
            "pictures_fps": (self.frames - self.skipped_pictures) / elapsed,
            "skipped_pictures": self.skipped_pictures,
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p95_ms": float(np.percentile(lat, 95)),
        }


@cache
def _single_threaded_blas() -> None:
    """Once per process: the setting is the process's, and each call scans and loads every BLAS library again (it
    left memory behind with every session)."""
    threadpool_limits(1, user_api="blas")


class LiveSession:
    """Drives `session` in real time on its own thread. Low-latency sessions (1-frame blocks) need more than one
    core's worth of work per second, so they draw their frames on a second thread, overlapping the next block's
    compute; the default sessions draw on the same thread (with a second one each, two sessions on 2 cores
    fell behind). on_frame(frame) is called for every frame, in order, on the drawing thread; it must
    be quick (hand the frame to a queue).

    Without start(), nothing runs by itself: each step() is one turn of the loop on the caller's thread, frames
    drawn inline (deterministic driving for tests, with a ManualClock)."""

    def __init__(
        self,
        session: TalkingSession,
        on_frame: Callable[[StreamFrame], None],
        jitter_s: float = JITTER_S,
        on_event: Callable[[str, float], None] | None = None,
        clock: Clock = time.monotonic,
        skip_after_s: float | None = None,
    ) -> None:
        self.session = session
        self.on_frame = on_frame
        self.on_event = on_event  # VAD events of the client's speech: ("speech_start" | "speech_end", seconds)
        self.jitter_s = jitter_s
        # 0.38 s for the default 4-frame blocks, 0.26 s for the low-latency 1-frame ones
        self.skip_after_s = (session.latency_frames + 1) / FPS + SKIP_MARGIN_S if skip_after_s is None else skip_after_s
        self.clock = clock
        self.stats = LiveStats(clock=clock, started=clock())
        self.error: Exception | None = None
        self._commands: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="openvasa-session", daemon=True)
        self._drawing: queue.Queue = queue.Queue()  # (epoch, frame, landmarks) to draw; None ends the thread
        self._drawer = threading.Thread(target=self._draw, name="openvasa-draw", daemon=True)
        self._draw_apart = session.block == 1
        self._epoch = 0  # interrupts so far: frames queued before an interrupt are dropped, never drawn
        self._lock = threading.Lock()  # arrivals, marks and the epoch, shared by the two threads
        self._closed = threading.Event()
        self._audio_s = 0.0  # seconds of audio (speech + fill) given to the session: its timeline
        # (frame showing a chunk's end, arrival time, client speech or filled silence)
        self._arrivals: deque[tuple[int, float, bool]] = deque()
        self._last_picture: np.ndarray | None = None
        self._draw_s = 0.0  # how long drawing a picture takes (moving average, on the session's clock)
        self._marks: deque[tuple[int, Callable[[], None]]] = deque()  # (frame, callback)

    def start(self) -> "LiveSession":
        self.stats.started = self.clock()
        if self._draw_apart:  # first: frames go to it only once it runs
            self._drawer.start()
        self._thread.start()
        return self

    def push_audio(self, pcm: np.ndarray, sample_rate: int) -> None:
        self._commands.put(("audio", pcm, sample_rate, self.clock()))

    def interrupt(self) -> None:
        self._commands.put(("interrupt",))

    def mark(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the session thread) right after the frame that shows the end of the audio pushed
        so far: an adapter's "end of this utterance" signal. An interrupt calls pending marks at once."""
        self._commands.put(("mark", callback))

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._commands.put(("close",))
        self._drawing.put(None)
        for thread in (self._thread, self._drawer):
            if thread.is_alive():
                thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and (self._drawer.is_alive() or not self._draw_apart)

    def _run(self) -> None:
        # A block's arrays are tiny: extra torch (OpenMP) and OpenBLAS threads only spin-wait, which took a
        # second core for no speed (1.6 cores for one session, 0.75 single-threaded; benchmarks/bench_stream.py).
        # torch's setting is per thread; OpenBLAS's is per process, harmless for the offline jobs beside us.
        torch.set_num_threads(1)
        _single_threaded_blas()
        try:
            while not self._closed.is_set():
                self.step(wait_s=0.01)
        except Exception as e:  # reported to the owner, who closes the connection
            log.exception("session failed")
            self.error = e

    def step(self, wait_s: float = 0.0) -> None:
        """One turn: take every command queued so far (waiting up to wait_s for the first), then fill silence if
        the clock has run ahead of the audio, then draw (or hand on) the frames computed. Every queued chunk is
        taken before silence is decided, so silence is never put in the middle of speech that was waiting."""
        try:
            command = self._commands.get(timeout=wait_s) if wait_s > 0 else self._commands.get_nowait()
        except queue.Empty:
            command = None
        while command is not None:
            if command[0] == "close":
                return
            self._handle(command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                command = None
        self._fill_silence()
        self._emit()

    def _handle(self, command: tuple) -> None:
        kind = command[0]
        if kind == "audio":
            _, pcm, rate, arrived = command
            seconds = len(pcm) / rate
            self.session.push_audio(pcm, rate)
            self._audio_s += seconds
            with self._lock:
                self._arrivals.append((int(np.ceil(self._audio_s * FPS)) - 1, arrived, True))
            while self.session.events:
                event = self.session.events.popleft()
                if self.on_event is not None:
                    self.on_event(*event)
        elif kind == "mark":
            with self._lock:
                self._marks.append((int(np.ceil(self._audio_s * FPS)) - 1, command[1]))
        elif kind == "interrupt":
            self.session.interrupt()
            with self._lock:
                self._epoch += 1
                self._arrivals.clear()
                marks, self._marks = list(self._marks), deque()
            for _, callback in marks:
                callback()
            self._audio_s = (self.session.frame_index) / FPS  # the dropped audio never plays
            self._fill_silence(force=True)

    def _fill_silence(self, force: bool = False) -> None:
        """Keep the session's timeline up with the clock: when it falls behind (no audio is arriving), add
        silence, enough for the frames to keep coming."""
        elapsed = self.clock() - self.stats.started
        behind = elapsed - self._audio_s
        if force or behind > self.jitter_s:
            seconds = max(behind, 0.0) + self.session.latency_frames / FPS if force else behind
            seconds = max(seconds, 1 / FPS)
            self.session.idle(seconds)
            self._audio_s += round(seconds * SAMPLE_RATE) / SAMPLE_RATE
            with self._lock:
                self._arrivals.append((int(np.ceil(self._audio_s * FPS)) - 1, self.clock(), False))

    def _emit(self) -> None:
        """Draw the frames computed so far, or hand them to the drawing thread."""
        for frame, points in self.session.take():
            if self._drawer.is_alive():
                self._drawing.put((self._epoch, frame, points))
            else:
                self._show(self._epoch, frame, points)

    def _draw(self) -> None:
        try:
            while (item := self._drawing.get()) is not None:
                self._show(*item)
        except Exception as e:  # reported to the owner, who closes the connection
            log.exception("drawing failed")
            self.error = e

    def _show(self, epoch: int, frame: StreamFrame, points: np.ndarray) -> None:
        """Draw a frame and hand it on, unless an interrupt came after it was computed. A frame whose picture would
        be out later than skip_after_s keeps the previous picture: its audio goes out on time, the picture is
        skipped."""
        if epoch != self._epoch:
            return
        with self._lock:
            # The first chunk whose end this frame shows or precedes (earlier ones went with earlier frames):
            # this frame's audio had come by then.
            arrived = self._arrivals[0][1] if self._arrivals else None
        late = arrived is not None and self.clock() + self._draw_s - arrived > self.skip_after_s
        if late and self._last_picture is not None:
            frame.image, frame.skipped = self._last_picture, True
        else:
            started = self.clock()
            self.session.render(frame, points)
            self._draw_s += 0.25 * (self.clock() - started - self._draw_s)
            self._last_picture = frame.image
        now = self.clock()
        with self._lock:
            if epoch != self._epoch:
                return
            while self._arrivals and self._arrivals[0][0] <= frame.index:
                _, arrived, speech = self._arrivals.popleft()
                if speech:
                    self.stats.latencies_ms.append(1000 * (now - arrived))
            self.stats.frames += 1
            self.stats.speech_frames += frame.speech
            self.stats.skipped_pictures += frame.skipped
        self.on_frame(frame)
        with self._lock:
            due = []
            while self._marks and self._marks[0][0] <= frame.index:
                due.append(self._marks.popleft()[1])
        for callback in due:
            callback()
