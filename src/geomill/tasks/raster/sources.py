"""Task ``raster.list_sources``: the raster files under a folder or storage prefix, sorted, for a fan-out stage."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from geomill.domain import InvalidInput
from geomill.engine.context import TaskContext
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
    hidden = any(part.startswith(".") for part in path.relative_to(base).parts)
    return path.is_file() and not hidden and path.suffix.lower() in RASTER_EXTENSIONS


def _join(prefix: str, key: str) -> str:
    """`key` (relative, posix) under `prefix`, keeping the prefix's form (URI or path)."""
    return prefix + key if prefix.endswith("/") else f"{prefix}/{key}"


def list_sources(params: ListSourcesParams, ctx: TaskContext) -> SourceList:
    """Handler of ``raster.list_sources``: every raster file below the prefix (recursively), by relative path.

    A prefix that names a folder lists that folder; otherwise it is a name prefix inside its parent folder, as on
    object storage (``bronze://scenes/2020-`` lists ``scenes/2020-*``).
    """
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
