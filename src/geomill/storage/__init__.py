"""Object storage: local folders (default); path safety, no escape from a root."""

from geomill.storage.base import ZONES, Storage, StorageError
from geomill.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StorageError", "ZONES"]
