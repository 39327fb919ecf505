"""The HTTP API (FastAPI): submit, track and operate jobs."""

from geomill.api.app import create_app

__all__ = ["create_app"]
