"""`openvasa serve`: a FastAPI server with a web page, live WebSocket sessions and offline jobs.

Live protocol (WebSocket /ws/{portrait_id}?gaze=x,y&distance=1&emotion=happy&motion_scale=1&seed=0):
  client -> server  text {"type": "start", "sample_rate": 48000}, then binary int16 mono PCM chunks of any
                    size; text {"type": "interrupt"} drops the audio not yet shown; {"type": "stop"} ends.
  server -> client  binary frames: b"F" + uint32 frame index + uint32 audio byte count + int16 PCM at the
                    client's rate + JPEG bytes (empty when the client was too slow and the picture was dropped,
                    or the server was and skipped it: keep showing the last picture; the audio is never
                    dropped). Text {"type": "ready", "fps": 25} first; text
                    {"type": "speech_start" | "speech_end", "t": seconds} when the client starts or stops talking;
                    text {"type": "stats", ...} every second: latency p50/p95 (ms), frames and pictures per second,
                    pictures skipped by the server and dropped for the client.
HTTP: GET / (web page), GET /api/portraits, POST /api/portraits (image upload), GET /api/health,
GET /api/metrics, POST /api/generate (offline: audio upload -> job), GET /api/jobs/{id}, GET /api/jobs/{id}/video.
"""

import asyncio
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse

from openvasa.errors import OpenVasaError
from openvasa.motion.controls import EMOTIONS, MotionControls
from openvasa.pipeline import Portrait, prepare_portrait
from openvasa.stream.realtime import Clock, LiveSession, ManualClock
from openvasa.stream.session import SUPPORTED_RATES, StreamFrame, TalkingSession
from openvasa.units import FPS, SAMPLE_RATE, to_pcm16

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
OUTGOING_FRAMES = 25  # frames queued per client (1 s); beyond that pictures are dropped, audio kept
JPEG_QUALITY = 80
PORTRAIT_CACHE = 16
STATS_EVERY_S = 1.0


@dataclass
class Job:
    id: str
    progress: float = 0.0
    status: str = "running"  # running | done | failed
    error: str = ""
    path: Path | None = None


@dataclass
class ServerState:
    max_sessions: int
    steps: int
    portraits: OrderedDict = field(default_factory=OrderedDict)  # id -> Portrait (most recent last)
    live: dict = field(default_factory=dict)  # session id -> LiveSession
    jobs: dict = field(default_factory=dict)
    dropped_frames: int = 0
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="openvasa-serve-")))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def portrait(self, portrait_id: str) -> Portrait:
        if portrait_id not in self.portraits:
            if portrait_id != "astronaut":
                raise HTTPException(404, f"unknown portrait {portrait_id!r}; upload it first")
            import skimage.data

            self.add_portrait("astronaut", prepare_portrait(skimage.data.astronaut()))
        self.portraits.move_to_end(portrait_id)
        return self.portraits[portrait_id]

    def add_portrait(self, portrait_id: str, portrait: Portrait) -> None:
        self.portraits[portrait_id] = portrait
        while len(self.portraits) > PORTRAIT_CACHE:
            self.portraits.popitem(last=False)


def parse_controls(params: dict[str, str]) -> MotionControls:
    """MotionControls from query or form fields (MotionControls.from_text); emotions by name only."""
    if params.get("emotion") and params["emotion"] not in EMOTIONS:
        raise HTTPException(400, f"emotion must be one of {', '.join(EMOTIONS)}")
    try:
        return MotionControls.from_text(params)
    except OpenVasaError as e:
        raise HTTPException(400, str(e)) from e


def frame_message(frame: StreamFrame, rate_audio: np.ndarray, with_image: bool) -> bytes:
    pcm = to_pcm16(rate_audio).tobytes()
    jpeg = b""
    if with_image:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        jpeg = buf.tobytes() if ok else b""
    return b"F" + struct.pack("<II", frame.index, len(pcm)) + pcm + jpeg


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


def create_app(max_sessions: int | None = None, steps: int = 10, clock: Clock = time.monotonic) -> FastAPI:
    """The server's app; `clock` drives its live sessions (tests pass a ManualClock)."""
    state = ServerState(max_sessions=max_sessions or cores(), steps=steps)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for live in list(state.live.values()):  # clean shutdown: every session thread stops
            live.close()

    app = FastAPI(title="openvasa", lifespan=lifespan)
    app.state.openvasa = state

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (resources.files("openvasa") / "stream" / "web" / "index.html").read_text()

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "sessions": len(state.live), "max_sessions": state.max_sessions}

    @app.get("/api/metrics")
    def metrics() -> dict:
        sessions = {sid: live.stats.summary() for sid, live in state.live.items()}
        return {"active_sessions": len(sessions), "dropped_frames": state.dropped_frames, "sessions": sessions,
                "jobs": {j.id: j.status for j in state.jobs.values()}}  # fmt: skip

    @app.get("/api/portraits")
    def portraits() -> dict:
        return {"presets": ["astronaut"], "uploaded": [p for p in state.portraits if p != "astronaut"]}

    @app.post("/api/portraits")
    async def upload_portrait(image: UploadFile = File(...)) -> dict:  # noqa: B008 (FastAPI's declaration style)
        data = await image.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"images up to {MAX_UPLOAD_BYTES // 2**20} MB")
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise HTTPException(400, "not an image (JPEG, PNG, WebP, ...)")
        portrait_id = hashlib.sha256(data).hexdigest()[:16]
        try:
            portrait = await asyncio.to_thread(prepare_portrait, cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
        except OpenVasaError as e:
            raise HTTPException(422, str(e)) from e
        state.add_portrait(portrait_id, portrait)
        return {"id": portrait_id}

    @app.post("/api/generate")
    async def generate_offline(request: Request, audio: UploadFile = File(...),  # noqa: B008
                               portrait: str = Form("astronaut")) -> dict:  # fmt: skip
        data = await audio.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"audio up to {MAX_UPLOAD_BYTES // 2**20} MB")
        form = await request.form()  # every control by its name (MotionControls.from_text)
        controls = parse_controls({key: value for key, value in form.items() if isinstance(value, str)})
        chosen = state.portrait(portrait)
        job = Job(uuid.uuid4().hex[:12])
        state.jobs[job.id] = job
        source = state.work_dir / f"{job.id}.audio"
        source.write_bytes(data)

        def run() -> None:
            from openvasa import pipeline

            def report(fraction: float) -> None:
                job.progress = fraction

            try:
                job.path = pipeline.generate(
                    chosen, source, state.work_dir / f"{job.id}.mp4", controls, on_progress=report
                )
                job.status = "done"
            except OpenVasaError as e:
                job.status, job.error = "failed", str(e)
            finally:
                source.unlink(missing_ok=True)

        threading.Thread(target=run, daemon=True).start()
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        job = state.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "unknown job")
        return {"id": job.id, "status": job.status, "progress": job.progress, "error": job.error}

    @app.get("/api/jobs/{job_id}/video")
    def job_video(job_id: str) -> FileResponse:
        job = state.jobs.get(job_id)
        if job is None or job.status != "done" or job.path is None:
            raise HTTPException(404, "no video for this job (yet)")
        return FileResponse(job.path, media_type="video/mp4", filename="openvasa.mp4")

    @app.websocket("/ws/{portrait_id}")
    async def live(ws: WebSocket, portrait_id: str) -> None:
        await ws.accept()
        with state.lock:
            full = len(state.live) >= state.max_sessions
        if full:
            await ws.close(code=1013, reason=f"all {state.max_sessions} sessions are busy; try again later")
            return
        try:
            controls = parse_controls(dict(ws.query_params))
            portrait = await asyncio.to_thread(state.portrait, portrait_id)
            start = json.loads(await ws.receive_text())
            rate = int(start.get("sample_rate", SAMPLE_RATE))
            if start.get("type") != "start" or rate not in SUPPORTED_RATES:
                raise HTTPException(400, f"send {{'type': 'start', 'sample_rate': one of {SUPPORTED_RATES}}} first")
            latency = ws.query_params.get("latency", "normal")
            if latency not in ("normal", "low"):
                raise HTTPException(400, "latency must be normal or low")
            session = await asyncio.to_thread(
                TalkingSession, portrait, controls, int(ws.query_params.get("seed", 0)), state.steps, None, rate,
                latency == "low",
            )  # fmt: skip
        except HTTPException as e:
            await ws.close(code=1008, reason=str(e.detail)[:120])
            return
        except (ValueError, OpenVasaError) as e:
            await ws.close(code=1008, reason=str(e)[:120])
            return
        loop = asyncio.get_running_loop()
        outgoing: asyncio.Queue = asyncio.Queue()

        dropped = 0

        def on_frame(frame: StreamFrame) -> None:  # on the session thread
            nonlocal dropped
            slow = outgoing.qsize() >= OUTGOING_FRAMES
            if slow:
                state.dropped_frames += 1
                dropped += 1
            picture = not (slow or frame.skipped)  # a skipped picture: the client keeps showing the last one
            loop.call_soon_threadsafe(outgoing.put_nowait, frame_message(frame, frame.audio, with_image=picture))

        def on_event(kind: str, seconds: float) -> None:  # VAD: the client started or stopped speaking
            loop.call_soon_threadsafe(outgoing.put_nowait, json.dumps({"type": kind, "t": round(seconds, 3)}))

        live = LiveSession(session, on_frame, on_event=on_event, clock=clock).start()
        session_id = uuid.uuid4().hex[:8]
        state.live[session_id] = live

        async def send() -> None:
            await ws.send_text(json.dumps({"type": "ready", "fps": 25, "session": session_id}))
            while True:
                message = await outgoing.get()
                if isinstance(message, str):
                    await ws.send_text(message)
                else:
                    await ws.send_bytes(message)

        async def report() -> None:  # what the page shows while the session runs
            while True:
                await asyncio.sleep(STATS_EVERY_S)
                stats = {k: round(v, 1) for k, v in live.stats.summary().items()}
                outgoing.put_nowait(json.dumps({"type": "stats", **stats, "dropped_pictures": dropped}))

        sender, reporter = asyncio.create_task(send()), asyncio.create_task(report())
        try:
            while live.running:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    live.push_audio(np.frombuffer(message["bytes"], "<i2"), rate)
                elif message.get("text") is not None:
                    kind = json.loads(message["text"]).get("type")
                    if kind == "interrupt":
                        live.interrupt()
                    elif kind == "stop":
                        break
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            reporter.cancel()
            live.close()
            state.live.pop(session_id, None)
            if live.error is not None:
                log.error("session %s ended with %s", session_id, live.error)
            try:
                await ws.close()
            except RuntimeError:
                pass  # already closed by the client

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, max_sessions: int | None = None, steps: int = 10) -> None:
    """Run the server. Without max_sessions, it first measures what one live session costs here (a few seconds)
    and holds as many sessions as fit at 25 fps."""
    import skimage.data
    import uvicorn

    from openvasa.render.speed import cpu_name, remap_seconds

    if max_sessions is None:
        cost = session_cost(prepare_portrait(skimage.data.astronaut()), steps)
        max_sessions = sessions_that_fit(cost, cores())
        print(
            f"openvasa serve: one live session costs {cost * 1000:.1f} ms a frame here ({cost / remap_seconds():.0f} "
            f"remaps) on {cores()} cores of {cpu_name()}: {max_sessions} session(s) at 25 fps (--max-sessions to change)",
            flush=True,
        )
    uvicorn.run(create_app(max_sessions, steps), host=host, port=port, log_level="info")
