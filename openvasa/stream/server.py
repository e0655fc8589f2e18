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
import hmac
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from openvasa.errors import OpenVasaError
from openvasa.io.media import decode_image, load_audio
from openvasa.pipeline import prepare_portrait
from openvasa.stream.capacity import cores, session_cost, sessions_that_fit
from openvasa.stream.connection import LiveConnection
from openvasa.stream.jobs import RETRY_AFTER_S, Job, JobQueue
from openvasa.stream.realtime import Clock
from openvasa.stream.state import ServerLimits, ServerState, parse_controls

TOKEN_ENV = "OPENVASA_TOKEN"
OPEN_PATHS = ("/api/health",)  # answered without the token (load balancers, uptime checks)
EXPIRE_EVERY_S = 60.0


def authorized(token: str | None, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """With a token set, a request must carry it: `Authorization: Bearer TOKEN` or `?token=TOKEN` (a browser's
    WebSocket cannot set headers)."""
    if token is None:
        return True
    given = query.get("token") or headers.get("authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def create_app(
    max_sessions: int | None = None,
    steps: int = 10,
    clock: Clock = time.monotonic,
    limits: ServerLimits | None = None,
    token: str | None = None,
    cors_origins: tuple[str, ...] = (),
) -> FastAPI:
    """The server's app; `clock` drives its live sessions and the jobs' limits (tests pass a ManualClock). With a
    `token`, every endpoint but /api/health refuses a client without it; `cors_origins` lets pages from those
    origins call the API (none by default)."""
    limits = limits or ServerLimits()
    state = ServerState(max_sessions=max_sessions or cores(), steps=steps, limits=limits)
    jobs = JobQueue(limits.max_waiting_jobs, limits.job_timeout_s, limits.job_ttl_s, clock)

    async def expire_jobs() -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            jobs.expire()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        expiry = asyncio.create_task(expire_jobs())
        yield
        expiry.cancel()
        for live in list(state.live.values()):  # clean shutdown: every session thread stops
            live.close()
        shutil.rmtree(state.work_dir, ignore_errors=True)  # uploaded audio and rendered videos

    app = FastAPI(title="openvasa", lifespan=lifespan)
    app.state.openvasa = state
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"])  # fmt: skip

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if request.url.path not in OPEN_PATHS and not authorized(token, request.headers, request.query_params):
            return JSONResponse({"detail": "a valid token is required"}, 401, {"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (resources.files("openvasa") / "stream" / "web" / "index.html").read_text()

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "sessions": len(state.live), "max_sessions": state.max_sessions}

    @app.get("/api/metrics")
    def metrics() -> dict:
        sessions = {sid: live.stats.summary() for sid, live in state.live.items()}
        jobs.expire()
        return {
            "active_sessions": len(sessions),
            "dropped_frames": state.dropped_frames,
            "sessions": sessions,
            "jobs": {j.id: j.status for j in list(jobs.jobs.values())},
        }

    @app.get("/api/portraits")
    def portraits() -> dict:
        return {"presets": ["astronaut"], "uploaded": [p for p in state.portraits if p != "astronaut"]}

    async def read_upload(upload: UploadFile, what: str) -> bytes:
        data = await upload.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"{what} up to {limits.max_upload_bytes / 2**20:g} MB")
        return data

    @app.post("/api/portraits")
    async def upload_portrait(image: UploadFile = File(...)) -> dict:  # noqa: B008 (FastAPI's declaration style)
        data = await read_upload(image, "images")
        portrait_id = hashlib.sha256(data).hexdigest()[:16]
        try:  # the image's size is checked from its header before it is decoded
            pixels = await asyncio.to_thread(decode_image, data, "the image")
        except OpenVasaError as e:
            raise HTTPException(400, str(e)) from e
        try:
            portrait = await asyncio.to_thread(prepare_portrait, pixels)
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
        data = await read_upload(audio, "audio")
        form = await request.form()  # every control by its name (MotionControls.from_text)
        controls = parse_controls({key: value for key, value in form.items() if isinstance(value, str)})
        chosen = await asyncio.to_thread(state.portrait, portrait)
        job = Job(uuid.uuid4().hex[:12])
        pcm = await asyncio.to_thread(_decode_audio, data, state.work_dir / f"{job.id}.audio", limits.max_audio_s)

        def work(report: Callable[[float], None]) -> Path:
            from openvasa import pipeline

            return pipeline.generate(chosen, pcm, state.work_dir / f"{job.id}.mp4", controls, on_progress=report)

        if not jobs.submit(job, work):
            raise HTTPException(
                429, "the offline queue is full; try again later", headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "unknown job (or expired)")
        return {"id": job.id, "status": job.status, "progress": job.progress, "error": job.error}

    @app.get("/api/jobs/{job_id}/video")
    def job_video(job_id: str) -> FileResponse:
        job = jobs.get(job_id)
        if job is None or job.status != "done" or job.path is None:
            raise HTTPException(404, "no video for this job (yet, or any more)")
        return FileResponse(job.path, media_type="video/mp4", filename="openvasa.mp4")

    @app.websocket("/ws/{portrait_id}")
    async def live(ws: WebSocket, portrait_id: str) -> None:
        await ws.accept()
        if not authorized(token, ws.headers, ws.query_params):
            await ws.close(code=1008, reason="a valid token is required")
            return
        await LiveConnection(ws, state, clock).serve(portrait_id)

    return app


def _decode_audio(data: bytes, path: Path, max_seconds: float) -> np.ndarray:
    """An upload's audio, decoded (and its length checked) before a job is queued for it; the file is not kept."""
    try:
        path.write_bytes(data)
        return load_audio(path, max_seconds=max_seconds)
    except OpenVasaError as e:
        raise HTTPException(400, str(e).replace(str(path), "the audio")) from e
    finally:
        path.unlink(missing_ok=True)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    max_sessions: int | None = None,
    steps: int = 10,
    limits: ServerLimits | None = None,
    token: str | None = None,
    cors_origins: tuple[str, ...] = (),
) -> None:
    """Run the server. Without max_sessions, it first measures what one live session costs here (a few seconds)
    and holds as many sessions as fit at 25 fps."""
    import skimage.data
    import uvicorn

    from openvasa.render.speed import cpu_name, remap_seconds

    limits = limits or ServerLimits()
    if max_sessions is None:
        cost = session_cost(prepare_portrait(skimage.data.astronaut()), steps)
        max_sessions = sessions_that_fit(cost, cores())
        print(
            f"openvasa serve: one live session costs {cost * 1000:.1f} ms a frame here ({cost / remap_seconds():.0f} "
            f"remaps) on {cores()} cores of {cpu_name()}: {max_sessions} session(s) at 25 fps (--max-sessions to change)",
            flush=True,
        )
    print(exposure(host, port, token, cors_origins), flush=True)
    app = create_app(max_sessions, steps, limits=limits, token=token, cors_origins=cors_origins)
    uvicorn.run(app, host=host, port=port, log_level="info", ws_max_size=limits.max_message_bytes)


def exposure(host: str, port: int, token: str | None, cors_origins: tuple[str, ...]) -> str:
    """The startup line saying who can reach what."""
    local = host in ("127.0.0.1", "localhost", "::1")
    reach = "this machine only" if local else f"anyone who can reach {host}:{port}"
    guard = (
        "a token is required on every endpoint but /api/health"
        if token
        else "NO token: anyone who reaches it can use it"
    )
    warning = "" if local or token else " -- set --token (or OPENVASA_TOKEN) and put TLS in front (README: Deploying)"
    cors = f"CORS for {', '.join(cors_origins)}" if cors_origins else "CORS off"
    page = f"http://{host}:{port}/" + ("?token=..." if token else "")
    return f"openvasa serve: {page} open to {reach}; {guard}; {cors}{warning}"
