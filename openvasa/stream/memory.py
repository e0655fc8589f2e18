"""Handing the memory that sessions and jobs freed back to the system (glibc only; a no-op elsewhere).

The server's memory grew in the soak (benchmarks/soak_server.py) although nothing leaked: Python's allocations were
flat (tracemalloc), and glibc's own count of the bytes in use stayed at about 1 GB while the free bytes it kept in
its heaps grew from 185 to 447 MB in 6 minutes. Each live session and job allocates and frees frame-sized buffers
(numpy, OpenCV, torch) on its own threads, and glibc keeps what they free for reuse, scattered over its arenas, instead
of returning it. malloc_trim(0) returns the free pages of every arena: in that soak it took the server from 1273 to
1070 MB at once.
"""

import ctypes
import logging
import sys
from functools import cache

log = logging.getLogger(__name__)


@cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has malloc_trim); None elsewhere (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into the process: its C library's among them
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return the heap pages that nothing uses any more to the system (glibc's malloc_trim(0)). Whether it could:
    False where the C library has no malloc_trim. Safe from any thread; ctypes releases the GIL while it runs."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        libc.malloc_trim(0)
    except Exception:  # never let housekeeping end a session or a job
        log.exception("malloc_trim failed")
        return False
    return True
