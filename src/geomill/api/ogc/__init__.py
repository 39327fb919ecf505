"""OGC API - Processes - Part 1 over geomill's job types (docs/ogc.md)."""

from geomill.api.ogc.routes import router

__all__ = ["router"]
