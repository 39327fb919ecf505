"""Task ``container.list``: a container's inventory as JSON lines parts in silver, streamed.

Objects arrive from `storage.list` in batches (a page of the cloud listing, or a local folder walk) and go to a
local temporary file line by line; every `part_size` objects the file is published as
``silver://container-manifests/<job id>/part-NNNNN.jsonl`` and a new one started. Memory holds one listing batch;
the result names the parts (a million objects at the default part size: 100 entries), never the objects.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from geomill.domain import TaskError
from geomill.engine.context import ObjectInfo, Storage, TaskContext
from geomill.tasks.container.kinds import OTHER, SNIFF_BYTES, extension, is_hidden, kind_of, kind_of_bytes
from geomill.tasks.container.models import MANIFESTS, ContainerFilter, ListContainerParams, Manifest, ManifestPart

logger = logging.getLogger(__name__)


def version_of(size: int, etag: str | None, mtime: str) -> str:
    """What identifies one state of an object: its etag, else (a local file) its size and mtime."""
    return etag.strip('"') if etag else f"{size}@{mtime}"


def relative_key(uri: str, base: str) -> str:
    """`uri` relative to the listed prefix `base` (both object URIs or local paths)."""
    return uri[len(base):].lstrip("/") if uri.startswith(base) else uri.rsplit("/", 1)[-1]


def listed(params: ContainerFilter, storage: Storage) -> Iterator[dict[str, Any]]:
    """The objects under `params.source` kept by its filters, in key order, as manifest lines."""
    base = storage.object_uri(params.source)
    previous = ""
    for batch in storage.list(params.source, None):
        for obj in batch:
            line = _line(obj, relative_key(obj.uri, base))
            if line["key"] <= previous:  # a diff by key range needs key order, which S3, Azure and the walk give
                raise TaskError(f"listing {params.source!r} is not in key order ({line['key']!r} after "
                                f"{previous!r})")
            previous = line["key"]
            if _kept(line["key"], params):
                if params.sniff and line["kind"] == OTHER and not is_hidden(line["key"]):
                    line["kind"] = kind_of_bytes(storage.read_head(obj.uri, SNIFF_BYTES)) or OTHER
                yield line


def _kept(key: str, params: ContainerFilter) -> bool:
    if params.pattern is not None and not fnmatch.fnmatchcase(key, params.pattern):
        return False
    return params.extensions is None or extension(key) in params.extensions


def _line(obj: ObjectInfo, key: str) -> dict[str, Any]:
    mtime = obj.mtime.isoformat()
    return {"key": key, "uri": obj.uri, "size": obj.size, "etag": obj.etag, "mtime": mtime, "kind": kind_of(key),
            "version": version_of(obj.size, obj.etag, mtime)}


class PartWriter:
    """JSON lines into local temporary files, each published to `prefix`part-NNNNN.jsonl when full."""

    def __init__(self, storage: Storage, prefix: str, part_size: int) -> None:
        self.storage, self.prefix, self.part_size = storage, prefix, part_size
        self.parts: list[ManifestPart] = []
        self._folder = storage.scratch_dir() / uuid.uuid4().hex
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._count = self._bytes = 0
        self._first = self._last = ""

    def add(self, line: dict[str, Any]) -> None:
        if self._file is None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._path = self._folder / f"part-{len(self.parts):05d}.jsonl"
            self._file = open(self._path, "w", encoding="utf-8")  # noqa: SIM115 - closed in flush/close
            self._first = line["key"]
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._count += 1
        self._bytes += line["size"]
        self._last = line["key"]
        if self._count >= self.part_size:
            self.flush()

    def flush(self) -> None:
        if self._file is None or self._path is None:
            return
        self._file.close()
        uri = f"{self.prefix}{self._path.name}"
        self.storage.put_file(self._path, uri)
        self._path.unlink()
        self.parts.append(ManifestPart(uri=uri, count=self._count, bytes=self._bytes, first_key=self._first,
                                       last_key=self._last))
        self._file, self._path, self._count, self._bytes = None, None, 0, 0

    def close(self) -> None:
        """Drop what was not published (on failure) and the temporary folder."""
        if self._file is not None:
            self._file.close()
        for leftover in self._folder.glob("*"):
            leftover.unlink(missing_ok=True)
        if self._folder.is_dir():
            self._folder.rmdir()


def manifest_prefix(job_id: str) -> str:
    return f"silver://{MANIFESTS}/{job_id}/"


def list_container(params: ListContainerParams, ctx: TaskContext) -> Manifest:
    """Handler of ``container.list``."""
    prefix = manifest_prefix(ctx.job_id)
    writer = PartWriter(ctx.storage, prefix, params.part_size)
    kinds: Counter[str] = Counter()
    total = size = 0
    try:
        for line in listed(params, ctx.storage):
            writer.add(line)
            kinds[line["kind"]] += 1
            total += 1
            size += line["size"]
            if total % 10_000 == 0:
                if ctx.cancelled:
                    raise TaskError("cancelled while listing")
                ctx.progress(0.5, f"{total} objects listed")
        writer.flush()
    finally:
        writer.close()
    logger.info("container listed", extra={"task_id": ctx.task_id, "source": params.source, "objects": total,
                                           "parts": len(writer.parts)})
    ctx.progress(1.0, f"{total} objects in {len(writer.parts)} manifest parts")
    return Manifest(source=params.source, object_uri=ctx.storage.object_uri(params.source), manifest_uri=prefix,
                    parts=writer.parts, objects=total, bytes=size, kinds=dict(sorted(kinds.items())))
