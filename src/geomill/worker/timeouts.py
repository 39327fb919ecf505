"""Soft per-task time limit: SIGALRM raises TaskTimeout in the handler (main thread only).

The pool's supervisor enforces the hard limit by killing a process that is still busy past the grace period
(GDAL code running in C cannot be interrupted by a Python exception).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from geomill.domain import TaskTimeout


@contextmanager
def soft_time_limit(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise TaskTimeout(f"task ran past its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
