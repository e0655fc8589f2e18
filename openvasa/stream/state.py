"""What the server keeps between requests (portraits, live sessions, jobs), and how requests name controls."""

import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException

from openvasa.errors import OpenVasaError
from openvasa.motion.controls import EMOTIONS, MotionControls
from openvasa.pipeline import Portrait, prepare_portrait
from openvasa.stream.jobs import JOB_TIMEOUT_S, JOB_TTL_S, MAX_WAITING_JOBS

PORTRAIT_CACHE = 16


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server; each is checked before the work it bounds."""

    max_upload_bytes: int = 20 * 2**20  # an uploaded image or audio file
    max_audio_s: float = 300.0  # an offline job's decoded audio
    max_waiting_jobs: int = MAX_WAITING_JOBS
    job_timeout_s: float = JOB_TIMEOUT_S
    job_ttl_s: float = JOB_TTL_S  # an ended job's video is deleted after this
    max_message_bytes: int = 2**20  # one live WebSocket message (a second of 48 kHz audio is 96 kB)
    # Audio may arrive ahead of real time by this much (a voice agent's TTS sends a sentence at once); more is a
    # client flooding the session, which is closed.
    max_audio_ahead_s: float = 30.0
    idle_timeout_s: float = 300.0  # a live client that sends nothing for this long is closed
    max_backlog_s: float = 10.0  # frames queued for a client that stopped reading; past this it is closed
    max_session_s: float = 3600.0


@dataclass
class ServerState:
    max_sessions: int
    steps: int
    limits: ServerLimits = field(default_factory=ServerLimits)
    portraits: OrderedDict = field(default_factory=OrderedDict)  # id -> Portrait (most recent last)
    live: dict = field(default_factory=dict)  # session id -> LiveSession
    dropped_frames: int = 0
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="openvasa-serve-")))
    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: set = field(default_factory=set)  # ids of the connections holding a live-session slot

    def reserve_slot(self, connection_id: str) -> bool:
        """Take one of max_sessions slots for a connection, at once and under the lock: connections that arrive
        together cannot all pass a count that only grows once their sessions have started."""
        with self.lock:
            if len(self.slots) >= self.max_sessions:
                return False
            self.slots.add(connection_id)
            return True

    def release_slot(self, connection_id: str) -> None:
        with self.lock:
            self.slots.discard(connection_id)

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
    """MotionControls from query or form fields (MotionControls.from_text); emotions by name only (NAME or
    NAME:STRENGTH)."""
    try:
        controls = MotionControls.from_text(params)
    except OpenVasaError as e:
        raise HTTPException(400, str(e)) from e
    if controls.emotion is not None and not isinstance(controls.emotion, str):
        raise HTTPException(400, f"emotion must be one of {', '.join(EMOTIONS)}, optionally as NAME:STRENGTH")
    return controls
