"""Task ``raster.list_sources``: the raster files under a folder or storage prefix, sorted, for a fan-out stage.

A prefix in S3 or Azure (``s3://bucket/scenes/``, ``az://container/scenes/``, or a zone whose base is remote) is
listed through ``storage.list`` in batches (one page of keys in memory at a time besides the rasters found).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from geomill.domain import InvalidInput
from geomill.engine.context import Storage, TaskContext
from geomill.storage.base import ZONES
from geomill.tasks.raster.models import ListSourcesParams

RASTER_EXTENSIONS = frozenset({
    ".tif", ".tiff", ".gtif", ".jp2", ".img", ".vrt", ".nc", ".hgt", ".asc", ".dem", ".bil", ".ers", ".kea",
})


class SourceList(BaseModel):
    prefix: str
    sources: list[str]  # URIs when the prefix is a storage URI, else local paths; sorted
    sizes: list[int]  # bytes, in the order of `sources`
    total_bytes: int


def _is_raster_file(path: Path, base: Path) -> bool:
    return path.is_file() and _is_raster_key(path.relative_to(base).as_posix())


def _is_raster_key(rel: str) -> bool:
    """A raster file name (by extension) with no hidden part (``.staging/``, ``.x.tif.tmp``)."""
    key = PurePosixPath(rel)
    return not any(part.startswith(".") for part in key.parts) and key.suffix.lower() in RASTER_EXTENSIONS


def _join(prefix: str, key: str) -> str:
    """`key` (relative, posix) under `prefix`, keeping the prefix's form (URI or path)."""
    return prefix + key if prefix.endswith("/") else f"{prefix}/{key}"


def list_sources(params: ListSourcesParams, ctx: TaskContext) -> SourceList:
    """Handler of ``raster.list_sources``: every raster file below the prefix (recursively), by relative path.

    A prefix that names a folder lists that folder; otherwise it is a name prefix inside its parent folder, as on
    object storage (``bronze://scenes/2020-`` lists ``scenes/2020-*``).
    """
    if ctx.storage.is_remote(params.prefix):
        found_remote = list_remote(params.prefix, ctx.storage)
        sources, sizes = [s for s, _ in found_remote], [n for _, n in found_remote]
        ctx.progress(1.0, f"{len(sources)} raster files found")
        return SourceList(prefix=params.prefix, sources=sources, sizes=sizes, total_bytes=sum(sizes))
    path = ctx.storage.local_path(params.prefix)
    if path.is_dir():
        base, folder_prefix, name_prefix = path, params.prefix, ""
    elif path.parent.is_dir() and not params.prefix.endswith("/"):
        base, folder_prefix, name_prefix = path.parent, params.prefix[: len(params.prefix) - len(path.name)], path.name
    else:
        raise InvalidInput(f"source_prefix {params.prefix!r}: no folder at {path}", field="source_prefix")
    found = sorted(
        (p.relative_to(base).as_posix(), p) for p in base.rglob("*")
        if p.relative_to(base).as_posix().startswith(name_prefix) and _is_raster_file(p, base)
    )
    if not found:
        raise InvalidInput(
            f"source_prefix {params.prefix!r} holds no raster files (looked for "
            f"{', '.join(sorted(RASTER_EXTENSIONS))} under {base})", field="source_prefix",
        )
    sources = [_join(folder_prefix, key) for key, _ in found]
    sizes = [p.stat().st_size for _, p in found]
    ctx.progress(1.0, f"{len(sources)} raster files found")
    return SourceList(prefix=params.prefix, sources=sources, sizes=sizes, total_bytes=sum(sizes))


def _scan(storage: Storage, folder: str, name_prefix: str) -> list[tuple[str, int]]:
    """(URI in the prefix's own form, size) of every raster object under `folder` whose relative key starts with
    `name_prefix`, read batch by batch."""
    base = storage.object_uri(folder)
    base = base if base.endswith("/") else base + "/"
    found = []
    for batch in storage.list(folder):
        for entry in batch:
            rel = entry.uri[len(base):] if entry.uri.startswith(base) else ""
            if rel.startswith(name_prefix) and _is_raster_key(rel):
                found.append((_join(folder, rel), entry.size))
    return sorted(found)


def list_remote(prefix: str, storage: Storage) -> list[tuple[str, int]]:
    """The rasters under an S3/Azure prefix: ``…/scenes/`` lists that folder; ``…/scenes`` lists the folder
    ``scenes/`` when it holds rasters, else is a name prefix inside its parent (``…/2020-`` lists ``2020-*``), as
    for local folders."""
    if prefix.endswith("/"):
        found = _scan(storage, prefix, "")
    else:
        found = _scan(storage, prefix + "/", "")
        if not found:
            scheme, _, rest = prefix.partition("://")
            parent, _, name = rest.rpartition("/")
            if parent or scheme in ZONES:  # a bucket alone has no parent to look in
                found = _scan(storage, f"{scheme}://{parent}/" if parent else f"{scheme}://", name)
    if not found:
        raise InvalidInput(
            f"source_prefix {prefix!r} holds no raster files (looked for {', '.join(sorted(RASTER_EXTENSIONS))} "
            f"under {storage.object_uri(prefix)})", field="source_prefix",
        )
    return found
