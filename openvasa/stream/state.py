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

PORTRAIT_CACHE = 16


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
    """MotionControls from query or form fields (MotionControls.from_text); emotions by name only."""
    if params.get("emotion") and params["emotion"] not in EMOTIONS:
        raise HTTPException(400, f"emotion must be one of {', '.join(EMOTIONS)}")
    try:
        return MotionControls.from_text(params)
    except OpenVasaError as e:
        raise HTTPException(400, str(e)) from e
