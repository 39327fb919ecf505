"""Local folders: ``<root>/bronze``, ``<root>/silver``, ``<root>/gold``."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from geomill.storage.base import ZONES, StorageError


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def ensure_zones(self) -> None:
        for zone in ZONES:
            (self.root / zone).mkdir(parents=True, exist_ok=True)

    def zone_path(self, zone: str) -> Path:
        if zone not in ZONES:
            raise StorageError(f"unknown storage zone {zone!r}; expected one of {', '.join(ZONES)}")
        return self.root / zone

    def _safe_join(self, zone: str, key: str) -> Path:
        base = self.zone_path(zone)
        rel = PurePosixPath(key.lstrip("/"))
        if any(part == ".." for part in rel.parts):
            raise StorageError(f"storage key {key!r} escapes the {zone} zone")
        path = (base / rel).resolve()
        if path != base and base not in path.parents:
            raise StorageError(f"storage key {key!r} escapes the {zone} zone")
        return path

    def local_path(self, uri: str) -> Path:
        if "://" not in uri:
            return Path(uri).expanduser().resolve()
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return Path(parsed.path).resolve()
        if parsed.scheme in ZONES:
            return self._safe_join(parsed.scheme, (parsed.netloc + parsed.path))
        raise StorageError(
            f"unsupported storage URI {uri!r}: use a local path, file://..., or one of "
            + ", ".join(f"{z}://" for z in ZONES)
        )

    def uri_for(self, zone: str, key: str) -> str:
        self._safe_join(zone, key)
        return f"{zone}://{key.lstrip('/')}"

    def exists(self, uri: str) -> bool:
        return self.local_path(uri).exists()

    def size(self, uri: str) -> int:
        return self.local_path(uri).stat().st_size
