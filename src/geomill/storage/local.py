"""Local folders: ``<root>/bronze``, ``<root>/silver``, ``<root>/gold`` (ObjectStorage with every zone local)."""

from geomill.storage.objects import LocalStorage

__all__ = ["LocalStorage"]
