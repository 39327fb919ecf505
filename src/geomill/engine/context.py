"""What a task handler receives besides its parameters: typed resources built once per worker process.

Handlers never see the store, the broker, a database URL or the settings: they get the storage, the catalog, a
vector sink and a few limits. The protocols are declared here; adapters (storage/, catalog/, sinks/) implement them
and the composition root (runtime.py) builds them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast


class ObjectInfo(Protocol):
    """One object's identity (geomill.storage.ObjectStat)."""

    @property
    def uri(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str | None: ...

    @property
    def mtime(self) -> datetime: ...


class Storage(Protocol):
    """Zones (bronze://, silver://, gold://) and URIs on local folders, S3 or Azure Blob (geomill.storage).

    `local_path` works for local files only (StorageError for a remote one); tasks read in place with `gdal_path`
    and write through `staging`, which publishes atomically."""

    def local_path(self, uri: str) -> Path: ...

    def uri_for(self, zone: str, key: str) -> str: ...

    def is_remote(self, uri: str) -> bool: ...

    def object_uri(self, uri: str) -> str: ...

    def href(self, uri: str) -> str: ...

    def local_mirror(self, uri: str) -> Path: ...

    def gdal_path(self, uri: str) -> str: ...

    def stat(self, uri: str) -> ObjectInfo: ...

    def exists(self, uri: str) -> bool: ...

    def list(self, prefix: str, pattern: str | None = None, batch: int = 1000) -> Iterator[list[Any]]: ...

    def read_bytes(self, uri: str) -> bytes: ...

    def read_head(self, uri: str, length: int) -> bytes: ...

    def write_bytes(self, uri: str, data: bytes) -> None: ...

    def put_file(self, local: Path, uri: str) -> None: ...

    def fetch(self, uri: str, dest: Path) -> Path: ...

    def delete(self, uri: str) -> None: ...

    def staging(self, uri: str) -> AbstractContextManager[Path]: ...

    def scratch_copy(self, uri: str) -> AbstractContextManager[Path]: ...

    def scratch_dir(self) -> Path: ...


class CatalogEntry(Protocol):
    """Where a catalog document landed (geomill.catalog.base.CatalogRef)."""

    @property
    def id(self) -> str: ...

    @property
    def collection_id(self) -> str | None: ...

    @property
    def static_path(self) -> str | None: ...

    @property
    def backend(self) -> str: ...


class Catalog(Protocol):
    """STAC upserts: the static catalog, or pgSTAC plus the static copy (geomill.catalog)."""

    backend: str

    def upsert_collection(self, collection: dict[str, Any]) -> CatalogEntry: ...

    def upsert_items(self, items: list[dict[str, Any]], collection_id: str) -> list[Any]: ...

    def get_item(self, item_id: str, collection_id: str | None = None) -> dict[str, Any] | None: ...

    def get_collection(self, collection_id: str) -> dict[str, Any] | None: ...

    def delete_item(self, item_id: str, collection_id: str) -> bool: ...


@dataclass(frozen=True)
class LedgerEntry:
    """One object a container sync processed: its key (relative to the synced source), URI, the version
    processed (etag, or size and mtime for a local file), its STAC item and the COG geomill wrote (None: the
    object was a COG already and is catalogued in place)."""

    key: str
    uri: str
    version: str
    item_id: str | None = None
    cog_uri: str | None = None


class ObjectLedger(Protocol):
    """What container syncs processed, per scope and key (geomill.store, table container_objects)."""

    def processed_range(self, scope: str, after: str, upto: str | None, limit: int) -> list[LedgerEntry]: ...

    def record_processed(self, scope: str, entry: LedgerEntry, job_id: str) -> None: ...

    def forget_processed(self, scope: str, key: str) -> bool: ...


@dataclass(frozen=True)
class FinalTable:
    """A vector load in place: its row count and bbox, a location to show, and where a STAC asset points."""

    count: int
    bbox: list[float]
    location: str  # "schema.table" or the GeoPackage's storage URI
    url: str | None = None  # a database table (credentials left out)
    path: Path | None = None  # a local file (the STAC asset gets a relative href)
    media_type: str | None = None


class VectorSink(Protocol):
    """Where vector loads land (geomill.sinks): staging, one chunk at a time, then one swap into place.

    `target` is a LoadTarget and `load` a VectorLoad (geomill.tasks.vector.models)."""

    backend: str  # "postgis" or "geopackage"

    def staging_name(self, key: str, schema: str, table: str) -> str: ...

    def prepare(self, schema: str) -> None: ...

    def refuse_existing(self, schema: str, table: str, if_exists: str) -> None: ...

    def create_staging(self, target: Any, chunk_schema: Any) -> None: ...

    def write_chunk(self, target: Any, chunk_index: int, table: Any) -> int: ...

    def drop_staging(self, target: Any) -> None: ...

    def swap_into_place(self, load: Any, to_wgs84: Callable[[list[float]], list[float]]) -> FinalTable: ...


class Solver(Protocol):
    """Runs a compute contract's solver (geomill.contracts): in this process, or on an AppServer over HTTP.

    Raises InvalidInput (inputs refused), PermanentError (e.g. ContractViolation: never retried) or
    TransientError (unreachable, 5xx: retried)."""

    mode: str  # "in_process" or "appserver"

    def solve(self, definition: str, version: str, inputs: dict[str, Any]) -> dict[str, Any]: ...

    def contract_digest(self, definition: str, version: str) -> str: ...

    def artifacts(self, definition: str, version: str, inputs: dict[str, Any],
                  outputs: dict[str, Any]) -> list[tuple[str, str, bytes]]:
        """Files the contract derives from inputs and outputs: (name, media type, bytes)."""
        ...


class ResultRecords(Protocol):
    """Where solve results and their artifacts are recorded (the store's compute tables)."""

    def save_compute_result(self, result: dict[str, Any], artifacts: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class Limits:
    """The few numbers handlers tune themselves with (from GEOMILL_* settings at the composition root)."""

    gdal_cache_mb: int = 64
    gdal_threads: str = "ALL_CPUS"
    vector_chunk_rows: int = 100_000
    large_raster_threshold_mb: float = 2048.0
    out_of_space_retry_seconds: float = 0.0  # OutOfSpace: 0 fails the task at once, else its next attempt waits
    stage_source_max_mb: float = 2048.0  # create_cog: a remote source up to this size is downloaded first


class _Unavailable:
    """Stands for a resource this context was not given: any use says which one."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"this task context has no {self._what} (give one to TaskContext)")


def _missing(what: str) -> Any:
    return cast(Any, _Unavailable(what))


@dataclass
class TaskContext:
    task_id: str
    job_id: str
    stage: int
    attempt: int
    storage: Storage
    catalog: Catalog = field(default_factory=lambda: _missing("catalog"))
    vector_sink: VectorSink = field(default_factory=lambda: _missing("vector sink"))
    limits: Limits = field(default_factory=Limits)
    solver: Solver = field(default_factory=lambda: _missing("solver"))
    records: ResultRecords = field(default_factory=lambda: _missing("result records"))
    ledger: ObjectLedger = field(default_factory=lambda: _missing("object ledger"))
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


@dataclass
class TaskResources:
    """The resources of one worker process, built once (runtime.py) and handed to every TaskContext."""

    storage: Storage
    catalog: Catalog
    vector_sink: VectorSink
    limits: Limits
    closers: list[Callable[[], None]] = field(default_factory=list)
    solver: Solver = field(default_factory=lambda: _missing("solver"))
    records: ResultRecords = field(default_factory=lambda: _missing("result records"))
    ledger: ObjectLedger = field(default_factory=lambda: _missing("object ledger"))

    def context(self, task_id: str, job_id: str, stage: int, attempt: int, **extra: Any) -> TaskContext:
        """A TaskContext for one task attempt carrying these resources."""
        return TaskContext(task_id=task_id, job_id=job_id, stage=stage, attempt=attempt, storage=self.storage,
                           catalog=self.catalog, vector_sink=self.vector_sink, limits=self.limits,
                           solver=self.solver, records=self.records, ledger=self.ledger, **extra)

    def close(self) -> None:
        """Close pools the resources opened (idempotent)."""
        closers, self.closers = self.closers, []
        for close in closers:
            close()
