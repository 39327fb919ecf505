"""The Storage protocol handlers read and write files through."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from geomill.domain import InvalidInput

ZONES = ("bronze", "silver", "gold")


class StorageError(InvalidInput):
    """A URI that is malformed, names an unknown zone, or escapes its root."""


@runtime_checkable
class Storage(Protocol):
    """Zones of files addressed by URIs like ``silver://cogs/x.tif``; plain paths are local files."""

    def local_path(self, uri: str) -> Path:
        """A local filesystem path GDAL can open for `uri` (a zone URI, file:// URI or plain path)."""
        ...

    def uri_for(self, zone: str, key: str) -> str:
        """The URI of `key` inside `zone`, after checking the key stays inside it."""
        ...

    def exists(self, uri: str) -> bool: ...

    def size(self, uri: str) -> int: ...
