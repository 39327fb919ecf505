"""The composition root: settings in, a wired registry, store, storage and dispatcher out."""

from __future__ import annotations

from dataclasses import dataclass

from geomill.config import Settings
from geomill.dispatch import open_broker, open_dispatch
from geomill.engine.dispatch_ports import Broker
from geomill.engine.orchestrator import Orchestrator
from geomill.engine.ports import Dispatch, Store
from geomill.engine.registry import Registry
from geomill.engine.routing import Router
from geomill.jobs import build_registry
from geomill.storage import LocalStorage
from geomill.store import open_store


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    store: Store
    storage: LocalStorage
    dispatch: Dispatch
    broker: Broker | None = None  # set: workers consume its messages instead of waiting on database wake-ups

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        """Build everything a process needs from its settings; creates the data folders and schema."""
        storage = LocalStorage(settings.data_dir)
        storage.ensure_zones()
        store = open_store(settings.resolved_database_url, settings)
        if migrate:
            store.migrate()
        registry = build_registry(settings.plugins)
        return cls(settings, registry, store, storage, open_dispatch(settings),
                   broker=open_broker(settings))

    @property
    def router(self) -> Router:
        s = self.settings
        return Router(long_size_bytes=s.long_task_size_mb * 1024 * 1024, long_seconds=s.long_task_minutes * 60,
                      queue_names=s.queue_names)

    @property
    def orchestrator(self) -> Orchestrator:
        return Orchestrator(self.registry, self.store, self.router)

    def close(self) -> None:
        close_dispatch = getattr(self.dispatch, "close", None)
        if close_dispatch is not None:
            close_dispatch()
        if self.broker is not None:
            self.broker.close()
        self.store.close()
