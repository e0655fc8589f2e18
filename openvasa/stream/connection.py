"""One live WebSocket connection of the server: the protocol of openvasa.stream.server, from the first message to
the close. Audio chunks go to a LiveSession; its frames come back as binary messages, with speech events and
stats as text."""

import asyncio
import json
import logging
import struct
import uuid
from functools import partial

import cv2
import numpy as np
from fastapi import HTTPException, WebSocket, WebSocketDisconnect

from openvasa.errors import OpenVasaError
from openvasa.stream.memory import release_freed_memory
from openvasa.stream.realtime import Clock, LiveSession
from openvasa.stream.session import SUPPORTED_RATES, StreamFrame, TalkingSession
from openvasa.stream.state import ServerState, parse_controls
from openvasa.units import FPS, SAMPLE_RATE, to_pcm16

log = logging.getLogger(__name__)

OUTGOING_FRAMES = 25  # frames queued per client (1 s); beyond that pictures are dropped, audio kept
JPEG_QUALITY = 80
STATS_EVERY_S = 1.0
LATENCIES = ("normal", "low")


class ClientLimit(Exception):
    """A client went past one of ServerLimits: its session is closed with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def start_rate(text: str) -> int:
    """The client's sample rate from its start message; ValueError, saying what to send, for anything else."""
    try:
        start = json.loads(text)
    except ValueError:
        start = None
    rate = start.get("sample_rate", SAMPLE_RATE) if isinstance(start, dict) else None
    if not isinstance(start, dict) or start.get("type") != "start" or rate not in SUPPORTED_RATES:
        raise ValueError(f"send {{'type': 'start', 'sample_rate': one of {SUPPORTED_RATES}}} first")
    return int(rate)


def _seed(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"seed must be a whole number, got {text[:20]!r}")
    return int(text)


def frame_message(frame: StreamFrame, rate_audio: np.ndarray, with_image: bool) -> bytes:
    pcm = to_pcm16(rate_audio).tobytes()
    jpeg = b""
    if with_image:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        jpeg = buf.tobytes() if ok else b""
    return b"F" + struct.pack("<II", frame.index, len(pcm)) + pcm + jpeg


class LiveConnection:
    """A client's live session over `ws`, from its accepted socket to its close (`serve`)."""

    def __init__(self, ws: WebSocket, state: ServerState, clock: Clock) -> None:
        self.ws, self.state, self.clock = ws, state, clock
        self.outgoing: asyncio.Queue = asyncio.Queue()
        self.dropped = 0  # pictures dropped because this client read too slowly
        self.session_id = uuid.uuid4().hex[:8]

    async def serve(self, portrait_id: str) -> None:
        if not self.state.reserve_slot(self.session_id):
            await self.ws.close(code=1013, reason=f"all {self.state.max_sessions} sessions are busy; try again later")
            return
        try:
            await self._serve(portrait_id)
        finally:
            self.state.release_slot(self.session_id)

    async def _serve(self, portrait_id: str) -> None:
        try:
            session, rate = await self._open(portrait_id)
        except HTTPException as e:
            await self.ws.close(code=1008, reason=str(e.detail)[:120])
            return
        except (ValueError, OpenVasaError) as e:
            await self.ws.close(code=1008, reason=str(e)[:120])
            return
        except ClientLimit as e:
            await self.ws.close(code=e.code, reason=e.reason)
            return
        except WebSocketDisconnect:
            return
        loop = asyncio.get_running_loop()
        live = LiveSession(
            session,
            lambda frame: loop.call_soon_threadsafe(self.outgoing.put_nowait, self._message(frame)),
            on_event=lambda kind, t: loop.call_soon_threadsafe(
                self.outgoing.put_nowait, json.dumps({"type": kind, "t": round(t, 3)})
            ),  # the client started or stopped speaking
            clock=self.clock,
        ).start()
        self.state.live[self.session_id] = live
        sender, reporter = asyncio.create_task(self._send()), asyncio.create_task(self._report(live))
        try:
            await self._receive(live, rate)
        except WebSocketDisconnect:
            pass
        except ValueError:  # a protocol error: closed with its reason, not a traceback in the log
            await self.ws.close(code=1007, reason="malformed message: audio is int16 PCM, text a JSON object")
        except ClientLimit as e:
            await self.ws.close(code=e.code, reason=e.reason)
        finally:
            sender.cancel()
            reporter.cancel()
            live.close()
            self.state.live.pop(self.session_id, None)
            if live.error is not None:
                log.error("session %s ended with %s", self.session_id, live.error)
            try:
                await self.ws.close()
            except (RuntimeError, WebSocketDisconnect):
                pass  # already closed by the client, or gone
            while not self.outgoing.empty():  # frames never sent (a client that stopped reading left up to 10 s)
                self.outgoing.get_nowait()
            await asyncio.to_thread(release_freed_memory)  # and what the session freed goes back (stream.memory)

    async def _open(self, portrait_id: str) -> tuple[TalkingSession, int]:
        """Read the controls from the query and the start message: the session and the client's sample rate."""
        params = self.ws.query_params
        controls = parse_controls(dict(params))
        portrait = await asyncio.to_thread(self.state.portrait, portrait_id)
        message = await self._next_message()
        if message.get("text") is None:
            raise ValueError("the first message must be the text start message")
        rate = start_rate(message["text"])
        latency = params.get("latency", "normal")
        if latency not in LATENCIES:
            raise HTTPException(400, f"latency must be one of {', '.join(LATENCIES)}")
        session = await asyncio.to_thread(
            partial(
                TalkingSession,
                portrait,
                controls,
                seed=_seed(params.get("seed", "0")),
                steps=self.state.steps,
                output_rate=rate,
                low_latency=latency == "low",
            )
        )
        return session, rate

    def _message(self, frame: StreamFrame) -> bytes:
        """A frame as sent (on the session's thread): its picture dropped when this client reads too slowly, or when
        the session skipped it (the client keeps showing the last one); its audio always kept."""
        slow = self.outgoing.qsize() >= OUTGOING_FRAMES
        if slow:
            self.state.dropped_frames += 1
            self.dropped += 1
        return frame_message(frame, frame.audio, with_image=not (slow or frame.skipped))

    async def _send(self) -> None:
        await self.ws.send_text(json.dumps({"type": "ready", "fps": int(FPS), "session": self.session_id}))
        while True:
            message = await self.outgoing.get()
            if isinstance(message, str):
                await self.ws.send_text(message)
            else:
                await self.ws.send_bytes(message)

    async def _report(self, live: LiveSession) -> None:
        """What the page shows while the session runs; a client that has stopped reading is closed once its backlog
        (audio kept, pictures dropped) passes the limit, so that it cannot grow the server's memory."""
        backlog = self.state.limits.max_backlog_s * FPS
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            if self.outgoing.qsize() > backlog:
                log.warning("session %s: the client stopped reading; closing it", self.session_id)
                live.close()
                await self.ws.close(code=1008, reason=f"not reading: {self.state.limits.max_backlog_s:g} s behind")
                return
            stats = {k: round(v, 1) for k, v in live.stats.summary().items()}
            self.outgoing.put_nowait(json.dumps({"type": "stats", **stats, "dropped_pictures": self.dropped}))

    async def _next_message(self) -> dict:
        """The client's next message, within the idle time and size limits; WebSocketDisconnect when it is gone."""
        limits = self.state.limits
        try:
            message = await asyncio.wait_for(self.ws.receive(), limits.idle_timeout_s)
        except TimeoutError:
            raise ClientLimit(1008, f"idle for {limits.idle_timeout_s:g} s") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        payload = message.get("bytes") if message.get("bytes") is not None else message.get("text") or ""
        if len(payload) > limits.max_message_bytes:
            raise ClientLimit(1009, f"messages up to {limits.max_message_bytes} bytes")
        return message

    async def _receive(self, live: LiveSession, rate: int) -> None:
        """Audio and commands until the client stops; ClientLimit when it sends audio faster than real time (beyond a
        burst) or stays longer than a session may."""
        limits = self.state.limits
        started, received_s = self.clock(), 0.0
        while live.running:
            message = await self._next_message()
            elapsed = self.clock() - started
            if elapsed > limits.max_session_s:
                raise ClientLimit(1008, f"sessions last at most {limits.max_session_s / 60:g} min; start a new one")
            if message.get("bytes") is not None:
                pcm = np.frombuffer(message["bytes"], "<i2")
                received_s += len(pcm) / rate
                if received_s - elapsed > limits.max_audio_ahead_s:
                    raise ClientLimit(1008, f"audio more than {limits.max_audio_ahead_s:g} s ahead of real time")
                live.push_audio(pcm, rate)
            elif message.get("text") is not None:
                command = json.loads(message["text"])
                if not isinstance(command, dict):
                    raise ValueError("not a JSON object")
                kind = command.get("type")
                if kind == "interrupt":
                    live.interrupt()
                    received_s = min(received_s, elapsed)  # the audio not yet shown is dropped: no longer ahead
                elif kind == "stop":
                    return
