"""The AppServer role (`geomill serve --mode appserver`): the compute contracts' solvers over HTTP, with no database
and no queue. Any server speaking the same protocol can take its place (docs/contracts.md)."""

from geomill.appserver.app import create_appserver

__all__ = ["create_appserver"]
