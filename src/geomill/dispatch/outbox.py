"""The outbox: what the database says is due is sent to the broker, so nothing is lost between "write the
database" and "send the message" (DESIGN.md §2, principle 2).

Rows are stamped as sent (``published_at``) when taken, in the same statement that selects them, so concurrent
publishers (every worker process after it commits, every supervisor on an interval) split the work. A publish that
fails is un-stamped; a publisher that dies in between loses nothing either: the janitor's pass, with a republish
age, sends again whatever was sent that long ago and is still unclaimed (a lost message, a crash, a purged queue).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from geomill.domain import DispatchError
from geomill.engine.registry import JOBS_QUEUE

log = logging.getLogger(__name__)


class Pending(Protocol):
    """A due, unsent task or event (engine.ports.PendingMessage); `queue` None means the jobs queue."""

    @property
    def queue(self) -> str | None: ...

    def body(self) -> dict[str, Any]: ...


class OutboxStore(Protocol):
    """The store calls the outbox makes (dispatch imports nothing from store/)."""

    def take_unpublished_work(self, limit: int, republish_after_seconds: float | None = None) -> Sequence[Pending]:
        ...

    def mark_unpublished(self, messages: Sequence[Any]) -> None: ...


class CountingStore(OutboxStore, Protocol):
    """A supervisor's store also counts republished messages."""

    def bump_counter(self, name: str, n: int = 1) -> None: ...


class Publisher(Protocol):
    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Send every (queue, body); return once all are confirmed, else raise DispatchError."""
        ...


def publish_outbox(store: OutboxStore, publisher: Publisher, queue_names: Mapping[str, str], *, limit: int = 500,
                   republish_after_seconds: float | None = None) -> int:
    """Send due, unsent work (and, with a republish age, work sent that long ago and still unclaimed); returns how
    many messages were sent. Raises DispatchError when the broker is unreachable (the rest is sent next time)."""
    sent = 0
    jobs = queue_names.get(JOBS_QUEUE, JOBS_QUEUE)
    while True:
        batch = store.take_unpublished_work(limit, republish_after_seconds)
        try:
            publisher.publish_many([(m.queue or jobs, json.dumps(m.body()).encode()) for m in batch])
        except DispatchError:
            store.mark_unpublished(batch)  # all of it: some may go twice, which claims by id make harmless
            raise
        sent += len(batch)
        if republish_after_seconds is not None and batch:
            log.info("outbox: republished %d messages", len(batch))
        if len(batch) < limit:
            return sent


class Outbox:
    """A supervisor's publisher: new work every publish interval, and the republish pass with the janitor."""

    def __init__(self, store: CountingStore, publisher: Publisher, queue_names: Mapping[str, str],
                 interval_seconds: float) -> None:
        self.store = store
        self.publisher = publisher
        self.queue_names = dict(queue_names)
        self.interval_seconds = interval_seconds
        self._next = 0.0
        self._failing = False  # the last pass failed: logged once, and once more when passes succeed again

    @classmethod
    def open(cls, runtime: Any) -> Outbox | None:
        """None when the runtime has no broker (the database is the queue: nothing to send)."""
        broker = getattr(runtime, "broker", None)
        if broker is None:
            return None
        s = runtime.settings
        return cls(runtime.store, broker, s.queue_names, s.broker_publish_interval_seconds)

    def send_due(self, republish_after_seconds: float | None = None) -> int:
        """Send unsent due work (at most every publish interval unless republishing); never raises."""
        now = time.monotonic()
        if republish_after_seconds is None and now < self._next:
            return 0
        self._next = now + self.interval_seconds
        try:
            sent = publish_outbox(self.store, self.publisher, self.queue_names,
                                  republish_after_seconds=republish_after_seconds)
        except Exception:  # broker or database away: the next pass sends it
            # once per outage: the broker's and the store's own lines say when the connection is lost and back
            log.log(logging.DEBUG if self._failing else logging.WARNING, "outbox pass failed; retrying each "
                    "interval", exc_info=not self._failing)
            self._failing = True
            return 0
        if self._failing:
            self._failing = False
            log.info("outbox passes succeed again")
        if sent and republish_after_seconds is not None:
            self.store.bump_counter("republished_messages", sent)
        return sent

    def close(self) -> None:
        """Close the publisher's connection (it reopens on the next publish)."""
        close = getattr(self.publisher, "close", None)
        if close is not None:
            close()
