"""What a task handler receives besides its parameters. Handlers never see the store or the broker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskContext:
    task_id: str
    job_id: str
    stage: int
    attempt: int
    storage: Any  # geomill.storage.base.Storage; typed loosely so engine stays free of adapters
    gdal_cache_mb: int = 64
    gdal_threads: str = "ALL_CPUS"
    database_url: str | None = None  # the resolved GEOMILL_DATABASE_URL: PostGIS loads and pgSTAC use it when PostgreSQL
    settings: Any = None  # geomill.config.Settings of the worker process (read-only), None in bare unit tests
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("geomill.task"))
    _progress: Callable[[float, str], None] | None = None
    _cancelled: Callable[[], bool] | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress within the task (0..1); shown by `geomill status`."""
        if self._progress is not None:
            self._progress(max(0.0, min(1.0, fraction)), message)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled; long handlers check it between steps."""
        return bool(self._cancelled and self._cancelled())
