"""Object storage: local folders (default), S3 and Azure Blob behind one set of operations; zones confined."""

from geomill.storage.base import ZONES, Storage, StorageError
from geomill.storage.objects import LocalStorage, ObjectStat, ObjectStorage

__all__ = ["LocalStorage", "ObjectStat", "ObjectStorage", "Storage", "StorageError", "ZONES"]
