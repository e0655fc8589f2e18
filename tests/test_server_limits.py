"""The server on a network: the token, the limits on what one client may ask, jobs that expire."""

import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from openvasa.stream import connection, memory
from openvasa.stream import jobs as jobs_module
from openvasa.stream.jobs import Job, JobQueue
from openvasa.stream.realtime import ManualClock
from openvasa.stream.server import create_app, exposure
from openvasa.stream.state import ServerLimits

TOKEN = "s3cret-token"


def closed_with(ws) -> dict:
    """The close message, past any frames, events and stats sent before it."""
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            return message


def start(ws) -> None:
    ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
    assert json.loads(ws.receive_text())["type"] == "ready"


def png_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte PNG whose header declares a width x height canvas (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def wav_seconds(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def test_a_token_guards_every_endpoint_but_health() -> None:
    with TestClient(create_app(max_sessions=1, clock=ManualClock(), token=TOKEN)) as client:
        assert client.get("/api/health").status_code == 200
        for method, path in [("get", "/"), ("get", "/api/metrics"), ("get", "/api/portraits"),
                             ("post", "/api/portraits"), ("post", "/api/generate"), ("get", "/api/jobs/x"),
                             ("get", "/api/jobs/x/video")]:  # fmt: skip
            answer = getattr(client, method)(path)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        page = client.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and "withToken" in page.text  # the page carries the token on
        with client.websocket_connect("/ws/astronaut") as ws:
            closed = closed_with(ws)
            assert closed["code"] == 1008 and "token" in closed["reason"]
        with client.websocket_connect(f"/ws/astronaut?token={TOKEN}") as ws:
            start(ws)
            ws.send_text(json.dumps({"type": "stop"}))


def test_startup_line_says_what_is_exposed() -> None:
    assert "this machine only" in exposure("127.0.0.1", 8000, None, ())
    open_line = exposure("0.0.0.0", 8000, None, ())
    assert "NO token" in open_line and "--token" in open_line and "CORS off" in open_line
    guarded = exposure("0.0.0.0", 8000, TOKEN, ("https://example.org",))
    assert "token is required" in guarded and "https://example.org" in guarded and TOKEN not in guarded


def test_live_clients_are_held_to_the_limits() -> None:
    """Audio faster than real time beyond the burst, an oversized message, a session past its length and a silent
    client are each closed with a code and a reason a client can act on; the slot is freed each time."""
    clock = ManualClock()
    limits = ServerLimits(max_audio_ahead_s=1.0, max_message_bytes=8000, max_session_s=30.0, idle_timeout_s=0.5)
    chunk = np.zeros(1600, "<i2").tobytes()  # 0.1 s at 16 kHz, 3200 bytes
    with TestClient(create_app(max_sessions=1, clock=clock, limits=limits)) as client:
        with client.websocket_connect("/ws/astronaut") as ws:  # a flood: 1.5 s at once on a clock that stands still
            start(ws)
            for _ in range(15):
                ws.send_bytes(chunk)
            closed = closed_with(ws)
            assert closed["code"] == 1008 and "ahead of real time" in closed["reason"]
        with client.websocket_connect("/ws/astronaut") as ws:  # the same audio, sent as time passes: kept
            start(ws)
            for _ in range(15):
                ws.send_bytes(chunk)
                clock.advance(0.1)
            ws.send_bytes(b"\0" * 9000)  # one message over the size limit
            closed = closed_with(ws)
            assert closed["code"] == 1009 and "8000 bytes" in closed["reason"]
        with client.websocket_connect("/ws/astronaut") as ws:
            start(ws)
            clock.advance(31.0)
            ws.send_bytes(chunk)
            closed = closed_with(ws)
            assert closed["code"] == 1008 and "at most" in closed["reason"]
        with client.websocket_connect("/ws/astronaut") as ws:  # says nothing at all
            closed = closed_with(ws)
            assert closed["code"] == 1008 and "idle" in closed["reason"]
        assert client.get("/api/health").json()["sessions"] == 0


def test_uploads_are_checked_before_the_work() -> None:
    limits = ServerLimits(max_audio_s=1.0)
    with TestClient(create_app(max_sessions=1, clock=ManualClock(), limits=limits)) as client:
        bomb = png_declaring(100_000, 100_000)
        assert len(bomb) < 200
        answer = client.post("/api/portraits", files={"image": ("bomb.png", bomb)})
        assert answer.status_code == 400 and "too large" in answer.json()["detail"]
        answer = client.post("/api/generate", files={"audio": ("long.wav", wav_seconds(2.0))})
        assert answer.status_code == 400 and "longer than the 1 s limit" in answer.json()["detail"]
        assert "/tmp" not in answer.json()["detail"]  # the server's paths stay on the server
        answer = client.post("/api/generate", files={"audio": ("noise.wav", b"RIFF" + bytes(100))})
        assert answer.status_code == 400
        work_dir = client.app.state.openvasa.work_dir
        assert not list(work_dir.iterdir())  # nothing of the refused uploads is kept
    assert not work_dir.exists()  # deleted at shutdown


def test_jobs_expire_and_stop_at_their_time_limit(tmp_path: Path) -> None:
    clock = ManualClock()
    jobs = JobQueue(max_waiting=1, timeout_s=10.0, ttl_s=60.0, clock=clock)
    video = tmp_path / "job.mp4"

    def render(report) -> Path:
        video.write_bytes(b"mp4")
        report(1.0)
        return video

    done = Job("done")
    jobs.jobs[done.id] = done
    jobs.run(done, render)
    assert done.status == "done" and jobs.get("done") is done
    clock.advance(61.0)
    assert jobs.get("done") is None and not video.exists()

    def slow(report) -> Path:
        for i in range(100):
            clock.advance(1.0)  # each frame takes a second
            report(i / 100)
        return video

    late = Job("late")
    jobs.run(late, slow)
    assert late.status == "failed" and "10 s limit" in late.error and late.progress < 0.2

    def broken(report) -> Path:
        raise KeyError("a bug")

    failed = Job("broken")
    jobs.run(failed, broken)
    assert failed.status == "failed" and "internal error" in failed.error


@pytest.mark.parametrize("header", ["Bearer s3cret-token", "s3cret-token"])
def test_token_in_a_header(header: str) -> None:
    with TestClient(create_app(max_sessions=1, clock=ManualClock(), token=TOKEN)) as client:
        assert client.get("/api/portraits", headers={"Authorization": header}).status_code == 200


def test_freed_memory_goes_back_after_each_session_and_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """glibc keeps what sessions and jobs free in its heaps; the server hands it back as each one ends (the soak's
    memory grew without it, openvasa.stream.memory)."""
    calls = []
    monkeypatch.setattr(connection, "release_freed_memory", lambda: calls.append("session") or True)
    monkeypatch.setattr(jobs_module, "release_freed_memory", lambda: calls.append("job") or True)
    with TestClient(create_app(max_sessions=1, clock=ManualClock())) as client:
        with client.websocket_connect("/ws/astronaut") as ws:
            start(ws)
            ws.send_text(json.dumps({"type": "stop"}))
            closed_with(ws)
        wait_for(lambda: calls == ["session"])  # once the socket is closed
    video = tmp_path / "job.mp4"
    job = Job("job")
    assert JobQueue().submit(job, lambda report: video)
    wait_for(lambda: "job" in calls)
    assert job.status == "done" and calls == ["session", "job"]


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_releasing_freed_memory_is_a_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    if memory._glibc() is not None:
        assert memory.release_freed_memory()  # glibc: malloc_trim ran
    monkeypatch.setattr(memory, "_glibc", lambda: None)  # macOS, Windows, musl
    assert not memory.release_freed_memory()
