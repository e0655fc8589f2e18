"""Offline jobs of the server: generations from uploaded audio, run one at a time on one worker thread (each uses the
whole machine) from a bounded queue, polled by id; each with a time limit, forgotten (and its video deleted) a
while after it ends."""

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openvasa.errors import OpenVasaError
from openvasa.stream.memory import release_freed_memory

log = logging.getLogger(__name__)

MAX_WAITING_JOBS = 4  # jobs queued behind the running one; beyond that a new one is refused (429)
RETRY_AFTER_S = 30  # what a refused client is told to wait
JOB_TIMEOUT_S = 600.0  # a running job past this is stopped (at its next frame)
JOB_TTL_S = 3600.0  # an ended job, and its video, is kept this long for the client to fetch
JOB_NICENESS = 10  # live sessions first: a job's threads run at this (lower) priority

Work = Callable[[Callable[[float], None]], Path]  # work(report_progress) -> the video's path


@dataclass
class Job:
    id: str
    progress: float = 0.0
    status: str = "queued"  # queued | running | done | failed
    error: str = ""
    path: Path | None = None
    ended_at: float | None = None  # on the queue's clock


class JobQueue:
    """Jobs run in order on one worker thread, started with the first job; at most `max_waiting` wait. `clock`
    (seconds) times the limit and the expiry; tests pass a ManualClock."""

    def __init__(
        self,
        max_waiting: int = MAX_WAITING_JOBS,
        timeout_s: float = JOB_TIMEOUT_S,
        ttl_s: float = JOB_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s, self.ttl_s, self.clock = timeout_s, ttl_s, clock
        self.jobs: dict[str, Job] = {}
        self._waiting: queue.Queue = queue.Queue(max_waiting)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job, work: Work) -> bool:
        """Queue a job; False (and nothing queued) when the queue is full."""
        self.expire()
        try:
            self._waiting.put_nowait((job, work))
        except queue.Full:
            return False
        with self._lock:
            self.jobs[job.id] = job
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, daemon=True, name="openvasa-jobs")
                self._worker.start()
        return True

    def get(self, job_id: str) -> Job | None:
        self.expire()
        return self.jobs.get(job_id)

    def expire(self) -> None:
        """Forget the jobs that ended more than ttl_s ago and delete their videos."""
        now = self.clock()
        with self._lock:
            old = [j for j in self.jobs.values() if j.ended_at is not None and now - j.ended_at > self.ttl_s]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            if job.path is not None:
                job.path.unlink(missing_ok=True)

    def _run(self) -> None:
        # Offline jobs yield the cores to live sessions: on Linux a thread has its own nice value, inherited by the
        # drawing threads a generation starts.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
        while True:
            job, work = self._waiting.get()
            self.run(job, work)
            release_freed_memory()  # what the job freed goes back (openvasa.stream.memory)

    def run(self, job: Job, work: Work) -> None:
        """Run work(report_progress), recording progress, the outcome and a user-facing error on `job`. The time
        limit is checked each time the work reports progress (every frame of a generation)."""
        deadline = self.clock() + self.timeout_s

        def report(fraction: float) -> None:
            if self.clock() > deadline:
                raise OpenVasaError(f"the job ran past its {self.timeout_s:g} s limit")
            job.progress = fraction

        job.status = "running"
        try:
            job.path = work(report)
            job.status = "done"
        except OpenVasaError as e:
            job.status, job.error = "failed", str(e)
        except Exception:  # a bug: the job fails, the worker lives on for the next ones
            log.exception("job %s failed", job.id)
            job.status, job.error = "failed", "internal error (see the server's log)"
        finally:
            job.ended_at = self.clock()
