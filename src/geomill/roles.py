"""Roles (the seed's app modes): which queues a process listens to and what it does.

`jobs` is the orchestration queue (job_submitted, stage_complete): only platform modes plan stages. A worker that
completes a stage's last task only signals (the event is written in the completion's transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from geomill.config import Settings
from geomill.domain import InvalidInput
from geomill.engine.registry import JOBS_QUEUE


class AppMode(StrEnum):
    STANDALONE = "standalone"
    PLATFORM_ONLY = "platform_only"
    PLATFORM_RASTER = "platform_raster"
    PLATFORM_VECTOR = "platform_vector"
    WORKER_RASTER = "worker_raster"
    WORKER_VECTOR = "worker_vector"
    WORKER_LONG = "worker_long"
    WORKER_SOLVE = "worker_solve"
    APPSERVER = "appserver"  # the compute contracts' solvers over HTTP: no database, no queue (geomill.appserver)
    CUSTOM = "custom"


HTTP_MODES = frozenset({"standalone", "platform_only", "platform_raster", "platform_vector"})

MODE_QUEUES: dict[AppMode, tuple[str, ...]] = {
    AppMode.STANDALONE: (JOBS_QUEUE, "raster-tasks", "vector-tasks", "long-tasks", "default-tasks", "solve-tasks"),
    AppMode.PLATFORM_ONLY: (JOBS_QUEUE,),
    AppMode.PLATFORM_RASTER: (JOBS_QUEUE, "raster-tasks", "default-tasks"),
    AppMode.PLATFORM_VECTOR: (JOBS_QUEUE, "vector-tasks", "default-tasks"),
    AppMode.WORKER_RASTER: ("raster-tasks",),
    AppMode.WORKER_VECTOR: ("vector-tasks",),
    AppMode.WORKER_LONG: ("long-tasks",),
    AppMode.WORKER_SOLVE: ("solve-tasks",),
    AppMode.APPSERVER: (),
}


@dataclass(frozen=True)
class Role:
    mode: AppMode
    queues: tuple[str, ...]  # logical names, `jobs` included when the process orchestrates
    has_http: bool = False  # API-bearing modes: standalone and platform_*

    @property
    def is_platform(self) -> bool:
        return JOBS_QUEUE in self.queues

    @property
    def is_worker(self) -> bool:
        return any(q != JOBS_QUEUE for q in self.queues)

    def describe(self, settings: Settings) -> dict[str, object]:
        """The seed-shaped `app_mode` document (health endpoints and `geomill serve` print it)."""
        return {
            "mode": str(self.mode), "app_name": settings.app_name, "queues": list(self.queues),
            "queue_names": {q: physical_queue(settings, q) for q in self.queues},
            "is_platform": self.is_platform, "is_worker": self.is_worker, "has_http": self.has_http,
            "process_layout": [list(p) for p in process_layout(self, settings)],
        }


def resolve_role(mode: str, queues: list[str] | None = None) -> Role:
    """A mode preset, or `custom` with explicit queues (`--queues a,b`)."""
    try:
        app_mode = AppMode(mode)
    except ValueError:
        raise InvalidInput(f"unknown app mode {mode!r}; expected one of {', '.join(m.value for m in AppMode)}",
                           field="app_mode") from None
    if queues:
        mode = AppMode.CUSTOM if app_mode is AppMode.STANDALONE else app_mode
        return Role(mode, tuple(queues), has_http=mode in HTTP_MODES)
    if app_mode is AppMode.CUSTOM:
        raise InvalidInput("app mode 'custom' needs --queues", field="queues")
    return Role(app_mode, MODE_QUEUES[app_mode], has_http=app_mode in HTTP_MODES)


def physical_queue(settings: Settings, logical: str) -> str:
    return settings.queue_names.get(logical, logical)


def process_layout(role: Role, settings: Settings) -> list[tuple[str, ...]]:
    """The queues of each worker process. With per-queue concurrency, each queue gets its own processes (every
    one of them also orchestrating when the role does); otherwise `workers` processes share all queues."""
    task_queues = [q for q in role.queues if q != JOBS_QUEUE]
    extra = (JOBS_QUEUE,) if role.is_platform else ()
    if not task_queues:
        return [extra]
    wanted = {q: n for q, n in settings.concurrency.items() if q in task_queues}
    if not wanted:
        return [tuple(role.queues)] * settings.workers
    layout = [(q, *extra) for q in task_queues for _ in range(wanted.get(q, 1))]
    return layout
