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
The app (routes) is here; a live connection is openvasa.stream.connection, offline jobs openvasa.stream.jobs,
what the server keeps openvasa.stream.state, the default session limit openvasa.stream.capacity.
Close codes: 1013 all sessions busy; 1008 bad start (portrait, controls, rate); 1007 a malformed message.
HTTP: GET / (web page), GET /api/portraits, POST /api/portraits (image upload), GET /api/health,
GET /api/metrics, POST /api/generate (offline: audio upload -> job), GET /api/jobs/{id}, GET /api/jobs/{id}/video.
"""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, HTMLResponse

from openvasa.errors import OpenVasaError
from openvasa.pipeline import prepare_portrait
from openvasa.stream.capacity import cores, session_cost, sessions_that_fit
from openvasa.stream.connection import LiveConnection
from openvasa.stream.jobs import MAX_WAITING_JOBS, RETRY_AFTER_S, Job, JobQueue
from openvasa.stream.realtime import Clock
from openvasa.stream.state import ServerState, parse_controls

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def create_app(
    max_sessions: int | None = None,
    steps: int = 10,
    clock: Clock = time.monotonic,
    max_waiting_jobs: int = MAX_WAITING_JOBS,
) -> FastAPI:
    """The server's app; `clock` drives its live sessions (tests pass a ManualClock)."""
    state = ServerState(max_sessions=max_sessions or cores(), steps=steps)
    jobs = JobQueue(max_waiting_jobs)

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
        return {
            "active_sessions": len(sessions),
            "dropped_frames": state.dropped_frames,
            "sessions": sessions,
            "jobs": {j.id: j.status for j in state.jobs.values()},
        }

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
    async def generate_offline(
        request: Request,
        audio: UploadFile = File(...),  # noqa: B008
        portrait: str = Form("astronaut"),
    ) -> dict:
        data = await audio.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"audio up to {MAX_UPLOAD_BYTES // 2**20} MB")
        form = await request.form()  # every control by its name (MotionControls.from_text)
        controls = parse_controls({key: value for key, value in form.items() if isinstance(value, str)})
        chosen = state.portrait(portrait)
        job = Job(uuid.uuid4().hex[:12])
        source = state.work_dir / f"{job.id}.audio"

        def work(report: Callable[[float], None]) -> Path:
            from openvasa import pipeline

            return pipeline.generate(chosen, source, state.work_dir / f"{job.id}.mp4", controls, on_progress=report)

        source.write_bytes(data)
        if not jobs.submit(job, work, cleanup=lambda: source.unlink(missing_ok=True)):
            source.unlink(missing_ok=True)
            raise HTTPException(
                429, "the offline queue is full; try again later", headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        state.jobs[job.id] = job
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
        await LiveConnection(ws, state, clock).serve(portrait_id)

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
