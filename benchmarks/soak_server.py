"""Soak `openvasa serve` on loopback: live sessions at the limit, extra clients that must be refused, clients that
misbehave (disconnect mid-stream, stop reading, flood audio, send garbage) and a stream of offline jobs, for a bounded
time. Reports the steady sessions' frame rate and latency, the refusals and closes by code, and the server's resident
memory, open files and threads at the start and the end.

    python benchmarks/soak_server.py --minutes 10 [--sessions 2] [--out out/soak.md]
    python benchmarks/soak_server.py --minutes 4 --warm-up 1 --only steady,stall --sample-every 30  # one cause at a time

The server runs in its own process (`openvasa serve`), measured from outside through /proc. One slot of the
`--sessions` is used by the misbehaving clients in turn; the others hold steady sessions that stream speech in
real time, read every frame and are judged on it.
"""

import argparse
import asyncio
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import websockets

from openvasa.io.media import load_audio
from openvasa.render.speed import cpu_name, remap_seconds

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "mimictalk_German_20s.mp4"
RATE = 16000
CHUNK_S = 0.02
TOKEN = "soak-token"
WARM_UP_MIN = 2.0
BEHAVIOURS = ("disconnect", "stall", "flood", "garbage")  # the misbehaving clients, in turn
PARTS = ("steady", *BEHAVIOURS, "jobs")  # what --only chooses from


@dataclass
class Tally:
    frames: int = 0
    pictures: int = 0
    seconds: float = 0.0
    latencies_p50: list[float] = field(default_factory=list)
    latencies_p95: list[float] = field(default_factory=list)
    closes: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    jobs: dict[str, int] = field(default_factory=dict)

    def close(self, behaviour: str, code: int | str) -> None:
        key = f"{behaviour}: {code}"
        self.closes[key] = self.closes.get(key, 0) + 1


def process_facts(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws/astronaut?token={TOKEN}"


async def read_frames(ws, tally: Tally, last: dict) -> None:
    async for message in ws:
        if isinstance(message, bytes):
            tally.frames += 1
            tally.pictures += len(message) > 9 + struct.unpack("<II", message[1:9])[1]  # a JPEG after the audio
        elif (stats := json.loads(message)).get("type") == "stats":
            last.update(stats)


async def steady(port: int, pcm: np.ndarray, until: float, tally: Tally) -> None:
    """One session for the whole soak, as a voice agent holds one: speech in real time, a second of silence
    between utterances, every frame read; the server's latency stats for the session at its end."""
    chunk = int(RATE * CHUNK_S)
    utterance = np.concatenate([pcm, np.zeros(RATE, pcm.dtype)])
    async with websockets.connect(ws_url(port), max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
        last: dict = {}  # the session's latest stats: latencies of its last 2,000 chunks (LiveStats)
        reader = asyncio.create_task(read_frames(ws, tally, last))
        started, sent = time.monotonic(), 0
        while time.monotonic() < until:
            await ws.send(utterance[sent % len(utterance) :][:chunk].tobytes())
            sent += chunk
            await asyncio.sleep(max(0.0, started + sent / RATE - time.monotonic()))
        tally.seconds = time.monotonic() - started
        await ws.send(json.dumps({"type": "stop"}))
        try:
            await asyncio.wait_for(reader, 10)
        except (TimeoutError, websockets.ConnectionClosed):
            pass
        tally.latencies_p50.append(last.get("latency_p50_ms", np.nan))
        tally.latencies_p95.append(last.get("latency_p95_ms", np.nan))


async def misbehave(
    port: int, pcm: np.ndarray, until: float, tally: Tally, held: asyncio.Event, behaviours: list[str]
) -> None:
    """The last slot, taken in turn by clients that disconnect mid-stream, stop reading, flood audio or send
    garbage; each must end with a close code (or a dropped connection for the one that left) and free the slot.
    `held` is set while one of them holds the slot: every slot is taken then."""
    turn = 0
    while behaviours and time.monotonic() < until:
        behaviour = behaviours[turn % len(behaviours)]
        try:
            ws = await websockets.connect(ws_url(port), max_size=2**22, max_queue=1)
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
            await asyncio.wait_for(ws.recv(), 30)  # ready: the slot is held
            turn += 1
            held.set()
            if behaviour == "disconnect":
                for start in range(0, RATE * 3, 320):
                    await ws.send(pcm[start : start + 320].tobytes())
                    await asyncio.sleep(CHUNK_S)
                ws.transport.abort()  # gone without a close
                tally.close(behaviour, "aborted by the client")
            else:
                if behaviour == "stall":  # sends in real time, never reads: closed once 10 s behind
                    for start in range(0, len(pcm), 320):
                        await ws.send(pcm[start : start + 320].tobytes())
                        await asyncio.sleep(CHUNK_S)
                elif behaviour == "flood":  # a minute of audio at once: past the burst allowance
                    for _ in range(120):
                        await ws.send(pcm[: RATE // 2].tobytes())
                else:
                    await ws.send("{not json")
                await asyncio.wait_for(ws.wait_closed(), 30)
                tally.close(behaviour, ws.close_code)
        except websockets.ConnectionClosed as e:
            tally.close(behaviour, e.rcvd.code if e.rcvd else "closed without a code")
        except (TimeoutError, OSError) as e:
            tally.close(behaviour, type(e).__name__)
        finally:
            held.clear()
        await asyncio.sleep(1)


async def refused(port: int, until: float, tally: Tally, held: asyncio.Event) -> None:
    """An extra client every few seconds while every slot is taken: it must be refused (1013)."""
    while time.monotonic() < until:
        try:
            await asyncio.wait_for(held.wait(), max(until - time.monotonic(), 0.1))
        except TimeoutError:
            return
        try:
            async with websockets.connect(ws_url(port)) as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
                await asyncio.wait_for(ws.recv(), 10)
                tally.close("extra", "admitted (a slot had just been freed)")
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else "closed without a code"
            tally.refused += code == 1013
            tally.close("extra", code)
        except (TimeoutError, OSError) as e:
            tally.close("extra", type(e).__name__)
        await asyncio.sleep(5)


async def offline_jobs(port: int, pcm: np.ndarray, until: float, tally: Tally) -> None:
    """A 2-second offline job every 30 s, polled to its end and downloaded."""
    wav = io.BytesIO()
    sf.write(wav, pcm[: RATE * 2].astype(np.float32) / 32768, RATE, format="WAV")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
        while time.monotonic() < until:
            answer = await client.post("/api/generate", files={"audio": ("s.wav", wav.getvalue())})
            if answer.status_code != 200:
                tally.jobs[f"http {answer.status_code}"] = tally.jobs.get(f"http {answer.status_code}", 0) + 1
            else:
                job = answer.json()["job"]
                status = "queued"
                while status in ("queued", "running") and time.monotonic() < until + 120:
                    await asyncio.sleep(1)
                    status = (await client.get(f"/api/jobs/{job}")).json()["status"]
                if status == "done":
                    video = await client.get(f"/api/jobs/{job}/video")
                    status = "done" if video.status_code == 200 and len(video.content) > 1000 else "no video"
                tally.jobs[status] = tally.jobs.get(status, 0) + 1
            await asyncio.sleep(30)


async def sample_memory(pid: int, until: float, samples: list[float], every_s: float) -> None:
    """The server's resident memory every `every_s`: a leak climbs steadily, a high-water mark levels off."""
    while time.monotonic() < until:
        await asyncio.sleep(min(every_s, max(until - time.monotonic(), 0.0)))
        samples.append(process_facts(pid)["rss_mb"])


async def soak(
    port: int,
    sessions: int,
    seconds: float,
    pcm: np.ndarray,
    pid: int,
    memory: list[float],
    parts: tuple[str, ...] = PARTS,
    every_s: float = 60.0,
) -> list[Tally]:
    until = time.monotonic() + seconds
    tallies = [Tally() for _ in range(sessions - 1)] if "steady" in parts else []
    chaos = Tally()
    held = asyncio.Event()
    await asyncio.gather(
        *(steady(port, pcm, until, t) for t in tallies),
        misbehave(port, pcm, until, chaos, held, [b for b in BEHAVIOURS if b in parts]),
        refused(port, until, chaos, held),
        *([offline_jobs(port, pcm, until, chaos)] if "jobs" in parts else []),
        sample_memory(pid, until, memory, every_s),
    )
    return [*tallies, chaos]


def wait_for_server(port: int, server: subprocess.Popen) -> None:
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=2, help="the server's session limit (one slot misbehaves)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--warm-up", type=float, default=WARM_UP_MIN, help="minutes before the start is measured")
    parser.add_argument("--only", default=",".join(PARTS), help=f"what runs, comma-separated: {', '.join(PARTS)}")
    parser.add_argument("--log", type=Path, help="keep the server's log here (tracebacks included)")
    parser.add_argument("--sample-every", type=float, default=60.0, help="seconds between memory samples")
    args = parser.parse_args()
    parts = tuple(args.only.split(","))
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    pcm = np.round(load_audio(SPEECH, sample_rate=RATE) * 32767).astype("<i2")
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "openvasa"),
        "serve",
        "--port",
        str(port),
        "--max-sessions",
        str(args.sessions),
    ]
    env = {**os.environ, "OPENVASA_TOKEN": TOKEN}
    log = (
        args.log.open("w+b") if args.log else tempfile.TemporaryFile()
    )  # not a pipe: a full pipe would stall the server's logging, and the server
    server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        wait_for_server(port, server)
        # Warm-up, not measured: models loaded, caches filled, and every behaviour and a few jobs once, so that
        # the start is the memory's high-water mark of the work itself and the soak shows what accumulates.
        asyncio.run(soak(port, args.sessions, args.warm_up * 60, pcm, server.pid, [], parts, args.sample_every))
        time.sleep(3)
        start = process_facts(server.pid)
        log_at_start = os.fstat(log.fileno()).st_size  # the server's log from here is the soak's
        started, memory = time.monotonic(), []
        tallies = asyncio.run(
            soak(port, args.sessions, args.minutes * 60, pcm, server.pid, memory, parts, args.sample_every)
        )
        wall = time.monotonic() - started
        time.sleep(5)  # sessions and jobs wind down
        end = process_facts(server.pid)
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.seek(0)
        stderr = log.read()
    steady_tallies, chaos = tallies[:-1], tallies[-1]
    fps = [f"{t.frames / max(t.seconds, 1e-9):.1f} / {t.pictures / max(t.seconds, 1e-9):.1f}" for t in steady_tallies]
    p50s = [x for t in steady_tallies for x in t.latencies_p50]
    p95s = [x for t in steady_tallies for x in t.latencies_p95]
    tracebacks = stderr.decode(errors="replace").count("Traceback")
    # A client that stops reading never reads the server's close frame (1008) behind its unread frames, so it sees
    # the connection drop (1006); the server's log says why it closed it.
    not_reading = stderr[log_at_start:].decode(errors="replace").count("the client stopped reading; closing it")
    remap_ms = remap_seconds() * 1000
    every = "each minute" if args.sample_every == 60 else f"every {args.sample_every:g} s"
    only = "" if parts == PARTS else f", only {', '.join(parts)}"
    lines = [
        f"Soak of `openvasa serve` for {wall / 60:.1f} min (after {args.warm_up:g} min of warm-up) on {os.cpu_count()} cores of {cpu_name()} "
        f"(one full-frame 512² cv2.remap: {remap_ms:.2f} ms), `--max-sessions {args.sessions}`{only}, token on:",
        "",
        "| measure | value |",
        "|---|---|",
        f"| steady sessions: frames / pictures per second of speech streamed | {', '.join(fps)} |",
        f"| steady sessions: latency p50 / p95 of the last 2,000 chunks, about 40 s (ms) | "
        f"{', '.join(f'{a:.0f} / {b:.0f}' for a, b in zip(p50s, p95s, strict=True))} |",
        f"| extra clients refused while full (1013) | {chaos.refused} |",
        f"| closes by behaviour: code | {'; '.join(f'{k} ×{v}' for k, v in sorted(chaos.closes.items()))} |",
        f"| stalled readers closed by the server (1008, its log) | {not_reading} |",
        f"| offline jobs | {', '.join(f'{k} ×{v}' for k, v in sorted(chaos.jobs.items()))} |",
        f"| resident memory start → end (MB) | {start['rss_mb']:.0f} → {end['rss_mb']:.0f} "
        f"({(end['rss_mb'] / start['rss_mb'] - 1) * 100:+.1f}%) |",
        f"| resident memory {every} (MB) | {', '.join(f'{m:.0f}' for m in memory)} |",
        f"| threads start → end | {start['threads']} → {end['threads']} |",
        f"| open files start → end | {start['open_files']} → {end['open_files']} |",
        f"| server alive at the end; tracebacks in its log | {'yes' if alive else 'NO'}; {tracebacks} |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
