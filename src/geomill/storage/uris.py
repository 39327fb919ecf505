"""Storage URIs, parsed once: local paths and ``file://``, ``s3://bucket/key``, ``az://container/blob``.

Zone aliases (``bronze://``, ``silver://``, ``gold://``) are resolved by the storage object against its configured
bases before they reach this module; here every URI names one backend, one bucket (or none, for local files) and one
key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from geomill.storage.base import StorageError

CLOUD_SCHEMES = {"s3": "s3", "az": "az", "azure": "az", "abfs": "az"}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class Location:
    """One object: `backend` "file" (bucket empty, key an absolute path), "s3" or "az"."""

    backend: str
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        if self.backend == "file":
            return self.key
        return f"{self.backend}://{self.bucket}/{self.key}"

    @property
    def is_local(self) -> bool:
        return self.backend == "file"

    def child(self, key: str) -> Location:
        """The object `key` below this location (a prefix), checked not to climb out of it."""
        rel = check_key(key)
        if self.backend == "file":
            return Location("file", "", str(Path(self.key) / rel) if rel else self.key)
        base = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return Location(self.backend, self.bucket, base + rel)


def check_key(key: str) -> str:
    """`key` without a leading slash; StorageError when a part is ``..`` or the key holds a NUL byte."""
    if "\x00" in key:
        raise StorageError(f"storage key {key!r} contains a null byte")
    rel = key.lstrip("/")
    if any(part == ".." for part in PurePosixPath(rel).parts):
        raise StorageError(f"storage key {key!r} climbs out of its prefix ('..')")
    return rel


def scheme_of(uri: str) -> str | None:
    """The lower-cased scheme of `uri`, or None for a plain path."""
    match = _SCHEME.fullmatch(uri)
    return match.group(1).lower() if match else None


def parse(uri: str) -> Location:
    """The Location of a local path, ``file://`` URI or cloud URI; StorageError for anything else."""
    if "\x00" in uri:
        raise StorageError(f"{uri!r} contains a null byte")
    match = _SCHEME.fullmatch(uri)
    if match is None:
        return Location("file", "", str(Path(uri).expanduser().resolve()))
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        host, _, path = rest.partition("/")
        if host.lower() not in ("", "localhost"):
            raise StorageError(f"{uri!r}: a file URI names no host other than localhost")
        return Location("file", "", str(Path("/" + path).resolve()))
    backend = CLOUD_SCHEMES.get(scheme)
    if backend is None:
        raise StorageError(f"unsupported storage URI {uri!r}: use a local path, file://, s3://bucket/key, "
                           "az://container/blob or a zone (bronze://, silver://, gold://)")
    bucket, _, key = rest.partition("/")
    if backend == "az" and "@" in bucket:  # abfs://container@account.dfs.core.windows.net/key
        bucket = bucket.split("@", 1)[0]
    if not _BUCKET.fullmatch(bucket):
        raise StorageError(f"{uri!r}: {bucket!r} is not a valid bucket or container name")
    return Location(backend, bucket, check_key(key))
