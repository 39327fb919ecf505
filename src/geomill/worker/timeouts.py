"""Soft per-task time limit: SIGALRM raises TaskTimeout in the handler (main thread only).

The pool's supervisor enforces the hard limit by killing a process that is still busy past the grace period
(GDAL code running in C cannot be interrupted by a Python exception). `interrupt` raises the same way at once,
from another thread (a heartbeat that lost its lease stops its task).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from geomill.domain import TaskTimeout

_lock = threading.Lock()  # a signal is only sent while the handler is ours (default SIGALRM ends the process)
_armed = False
_reason: str | None = None


@contextmanager
def soft_time_limit(seconds: float) -> Iterator[None]:
    global _armed, _reason
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        if _armed:  # a signal sent just before the limit was lifted is dropped
            raise TaskTimeout(_reason or f"task ran past its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    with _lock:
        _armed, _reason = True, None
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        with _lock:
            _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interrupt(reason: str) -> bool:
    """Raise TaskTimeout(reason) in the task running under `soft_time_limit` now; False when none is."""
    global _reason
    with _lock:
        if not _armed:
            return False
        _reason = reason
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
        return True
