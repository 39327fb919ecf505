"""What a job's callback subscribers are sent (`service.callbacks` delivers it): the statusInfo to inProgressUri
when the job starts running and each time its whole-percent progress moves, the results document to successUri,
the statusInfo (with the error as its message) to failedUri (a dismissed job counts as failed)."""

from __future__ import annotations

from typing import Any

from geomill.api.ogc import documents
from geomill.engine.ports import Subscriber
from geomill.service.callbacks import Notice


def composer(base: str) -> Any:
    """The `Compose` function of `service.callbacks` for links under `base`."""

    def compose(sub: Subscriber, doc: dict[str, Any]) -> Notice | None:
        info = documents.status_info(base, doc)
        status = info["status"]
        if status == "successful":
            return Notice(status, sub.success_uri, documents.results(doc), final=True)
        if status in ("failed", "dismissed"):
            return Notice(status, sub.failed_uri, info, final=True)
        if status == "running":
            state = f"running:{info['progress']}"
            return None if state == sub.notified else Notice(state, sub.in_progress_uri, info, final=False)
        return None  # accepted: nothing to say yet

    return compose
