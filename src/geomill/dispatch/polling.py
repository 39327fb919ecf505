"""Database polling with adaptive back-off: eager while work flows, slower when idle."""

from __future__ import annotations

import threading
from collections.abc import Sequence


class PollingDispatch:
    def __init__(self, max_interval: float = 0.5, min_interval: float = 0.005) -> None:
        self.max_interval = max_interval
        self.min_interval = min_interval
        self._interval = min_interval
        self._wake = threading.Event()

    def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep the current back-off (at most `timeout`), doubling it for the next idle poll."""
        self._wake.wait(min(self._interval, timeout))
        self._wake.clear()
        self._interval = min(self._interval * 2, self.max_interval)

    def notify(self, queue: str) -> None:
        self._wake.set()

    def found_work(self) -> None:
        self._interval = self.min_interval
