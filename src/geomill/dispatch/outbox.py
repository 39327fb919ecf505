"""The outbox: what the database says is due is sent to the broker, so nothing is lost between "write the
database" and "send the message" (DESIGN.md §2, principle 2).

Rows are stamped as sent (``published_at``) when taken, in the same statement that selects them, so concurrent
publishers (every worker process after it commits, every supervisor on an interval) split the work. A publish that
fails is un-stamped; a publisher that dies in between loses nothing either: the janitor's pass, with a republish
age, sends again whatever was sent that long ago and is still unclaimed (a lost message, a crash, a purged queue).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from geomill.domain import DispatchError
from geomill.engine.ports import Store
from geomill.engine.registry import JOBS_QUEUE

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish_many(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Send every (queue, body); return once all are confirmed, else raise DispatchError."""
        ...


def publish_outbox(store: Store, publisher: Publisher, queue_names: Mapping[str, str], *, limit: int = 500,
                   republish_after_seconds: float | None = None) -> int:
    """Send due, unsent work (and, with a republish age, work sent that long ago and still unclaimed); returns how
    many messages were sent. Raises DispatchError when the broker is unreachable (the rest is sent next time)."""
    sent = 0
    while True:
        batch = store.take_unpublished_work(limit, republish_after_seconds)
        try:
            publisher.publish_many([(m.queue or queue_names.get(JOBS_QUEUE, JOBS_QUEUE), m.body()) for m in batch])
        except DispatchError:
            store.mark_unpublished(batch)  # all of it: some may go twice, which claims by id make harmless
            raise
        sent += len(batch)
        if republish_after_seconds is not None and batch:
            log.info("outbox: republished %d messages", len(batch))
        if len(batch) < limit:
            return sent
