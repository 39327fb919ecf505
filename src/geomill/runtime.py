"""The composition root: settings in, a wired registry, store, storage, dispatcher and task resources out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from geomill.config import Settings
from geomill.contracts import Contracts, load_contracts
from geomill.dispatch import open_broker, open_dispatch
from geomill.engine.context import Limits, TaskResources
from geomill.engine.dispatch_ports import Broker
from geomill.engine.orchestrator import Orchestrator
from geomill.engine.ports import Dispatch, Store
from geomill.engine.registry import Registry
from geomill.engine.routing import Router
from geomill.jobs import build_registry
from geomill.storage import ObjectStorage
from geomill.store import open_store

RESOURCE_POOL_SIZE = 2  # connections of the PostGIS sink and pgSTAC catalog per process (on top of the store's)


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    store: Store
    storage: ObjectStorage
    dispatch: Dispatch
    broker: Broker | None = None  # set: workers consume its messages instead of waiting on database wake-ups
    _resources: TaskResources | None = field(default=None, repr=False)
    _contracts: Contracts | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        """Build everything a process needs from its settings; creates the data folders and schema."""
        storage = ObjectStorage(settings.data_dir, settings.zone_urls(),
                                public_urls={"silver": settings.silver_public_url},
                                signed_url_seconds=settings.signed_url_seconds)
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

    @property
    def resources(self) -> TaskResources:
        """This process's task resources, built on first use (a process that runs no task builds none)."""
        if self._resources is None:
            resources = open_task_resources(self.settings, self.storage)
            resources.solver = cast(Any, _Deferred(lambda: open_solver(self.settings, self.contracts)))
            resources.records = self.store
            resources.ledger = self.store  # the store's container ledger, as the narrow ObjectLedger port
            self._resources = resources
        return self._resources

    @property
    def contracts(self) -> Contracts:
        """The compute contracts (shipped and GEOMILL_CONTRACTS_DIR), loaded on first use."""
        if self._contracts is None:
            self._contracts = load_contracts(self.settings.contracts_dir)
        return self._contracts

    def close(self) -> None:
        if self._resources is not None:
            self._resources.close()
        close_dispatch = getattr(self.dispatch, "close", None)
        if close_dispatch is not None:
            close_dispatch()
        if self.broker is not None:
            self.broker.close()
        self.store.close()


class _Deferred:
    """A resource built on its first use: a worker that runs only raster tasks never imports the vector sink's
    libraries nor opens its pool, and `geomill --help` builds nothing."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build: Callable[[], Any] | None = build
        self._target: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._build is not None:
            self._target, self._build = self._build(), None
        return getattr(self._target, name)


def limits_from(settings: Settings) -> Limits:
    return Limits(gdal_cache_mb=settings.gdal_cache_mb, gdal_threads=settings.gdal_threads,
                  vector_chunk_rows=settings.vector_chunk_rows,
                  large_raster_threshold_mb=settings.large_raster_threshold_mb,
                  out_of_space_retry_seconds=settings.out_of_space_retry_seconds,
                  stage_source_max_mb=settings.stage_source_max_mb)


def open_task_resources(settings: Settings, storage: ObjectStorage, *, database_url: str | None = None,
                        pool_size: int = RESOURCE_POOL_SIZE) -> TaskResources:
    """Storage, catalog (pgSTAC on PostgreSQL, else static STAC), vector sink (PostGIS or GeoPackage) and limits,
    once per process. On PostgreSQL the sink and the catalog share one pool of `pool_size` connections."""
    from geomill.catalog.base import is_postgres, open_catalog

    url = database_url or settings.resolved_database_url
    if not is_postgres(url):
        return TaskResources(storage=storage, catalog=cast(Any, _Deferred(lambda: open_catalog(storage))),
                             vector_sink=cast(Any, _Deferred(lambda: _geopackage_sink(storage))),
                             limits=limits_from(settings))
    from geomill.sinks.pool import ResourcePool

    pool = ResourcePool(url, pool_size, settings.app_name)
    return TaskResources(storage=storage, catalog=cast(Any, _Deferred(lambda: open_catalog(storage, url, pool=pool))),
                         vector_sink=cast(Any, _Deferred(lambda: _postgis_sink(pool))),
                         limits=limits_from(settings), closers=[pool.close])


def open_solver(settings: Settings, contracts: Contracts) -> Any:
    """The solve tasks' Solver: an AppServer over HTTP when GEOMILL_APPSERVER_URL is set, else in this process."""
    if settings.appserver_url:
        from geomill.contracts.remote import AppServerSolver

        return AppServerSolver(settings.appserver_url, contracts, settings.appserver_connect_timeout_seconds)
    from geomill.contracts.local import LocalSolver

    return LocalSolver(contracts)


def _geopackage_sink(storage: ObjectStorage) -> Any:
    from geomill.sinks.geopackage import GeoPackageSink

    return GeoPackageSink(storage)


def _postgis_sink(pool: Any) -> Any:
    from geomill.sinks.postgis import PostgisSink

    return PostgisSink(pool)
