"""Offline jobs of the server: generations from uploaded audio, run one at a time on one worker thread (each uses the
whole machine) from a bounded queue, polled by id."""

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openvasa.errors import OpenVasaError

MAX_WAITING_JOBS = 4  # jobs queued behind the running one; beyond that a new one is refused (429)
RETRY_AFTER_S = 30  # what a refused client is told to wait

Work = Callable[[Callable[[float], None]], Path]  # work(report_progress) -> the video's path


@dataclass
class Job:
    id: str
    progress: float = 0.0
    status: str = "queued"  # queued | running | done | failed
    error: str = ""
    path: Path | None = None


class JobQueue:
    """Jobs run in order on one worker thread, started with the first job; at most `max_waiting` wait."""

    def __init__(self, max_waiting: int = MAX_WAITING_JOBS) -> None:
        self._waiting: queue.Queue = queue.Queue(max_waiting)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job, work: Work, cleanup: Callable[[], None]) -> bool:
        """Queue a job; False (and nothing queued) when the queue is full. cleanup() runs once the job has ended."""
        try:
            self._waiting.put_nowait((job, work, cleanup))
        except queue.Full:
            return False
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, daemon=True, name="openvasa-jobs")
                self._worker.start()
        return True

    def _run(self) -> None:
        while True:
            job, work, cleanup = self._waiting.get()
            run_job(job, work, cleanup)


def run_job(job: Job, work: Work, cleanup: Callable[[], None]) -> None:
    """Run work(report_progress), recording progress, the outcome and a user-facing error on `job`; cleanup() runs
    whatever happens."""

    def report(fraction: float) -> None:
        job.progress = fraction

    job.status = "running"
    try:
        job.path = work(report)
        job.status = "done"
    except OpenVasaError as e:
        job.status, job.error = "failed", str(e)
    finally:
        cleanup()
