"""How workers learn of work: database-native polling now; LISTEN/NOTIFY and brokers plug in here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomill.dispatch.polling import PollingDispatch

if TYPE_CHECKING:
    from geomill.config import Settings
    from geomill.engine.ports import Dispatch


def open_dispatch(settings: Settings) -> Dispatch:
    return PollingDispatch(max_interval=settings.poll_interval_seconds)


__all__ = ["PollingDispatch", "open_dispatch"]
