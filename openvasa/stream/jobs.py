"""Offline jobs of the server: one generation from an uploaded audio file, run on its own thread, polled by id."""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openvasa.errors import OpenVasaError


@dataclass
class Job:
    id: str
    progress: float = 0.0
    status: str = "running"  # running | done | failed
    error: str = ""
    path: Path | None = None


def start_job(job: Job, work: Callable[[Callable[[float], None]], Path], cleanup: Callable[[], None]) -> None:
    """Run work(report_progress) -> the video's path on a thread, recording progress, the outcome and a user-facing
    error on `job`; cleanup() runs whatever happens."""

    def run() -> None:
        def report(fraction: float) -> None:
            job.progress = fraction

        try:
            job.path = work(report)
            job.status = "done"
        except OpenVasaError as e:
            job.status, job.error = "failed", str(e)
        finally:
            cleanup()

    threading.Thread(target=run, daemon=True, name=f"openvasa-job-{job.id}").start()
