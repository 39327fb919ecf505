"""How work reaches workers: the ports a broker (RabbitMQ, the in-memory stub) implements.

A worker receives claimable work one of two ways, chosen once when the runtime is built:
- no broker: the database is the queue; `WakeUps` (engine.ports.Dispatch: polling or LISTEN/NOTIFY) says when to
  look, and the worker claims through the store;
- a `Broker`: a `Subscription` yields deliveries, each naming one task or event id that the worker then claims by
  id (the database stays the judge: a duplicate or stale delivery claims nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

WAKE_CHANNEL_PREFIX = "geomill_"


def wake_channel(queue: str) -> str:
    """The PostgreSQL LISTEN/NOTIFY channel of a queue: the store NOTIFYs it, the dispatcher LISTENs to it."""
    return WAKE_CHANNEL_PREFIX + queue


QueueStats = dict[str, dict[str, int]]  # queue -> {"messages": ready, "consumers": n} (+ "absent": 1 if undeclared)


@dataclass(frozen=True)
class Delivery:
    """One message as consumed; settle it through the subscription that yielded it."""

    queue: str
    body: bytes
    delivery_count: int = 0  # earlier deliveries of this message that were not acknowledged
    tag: Any = None  # the transport's handle for settling it


class WakeUps(Protocol):
    """Database wake-ups (the same shape as engine.ports.Dispatch): only hints, the store decides."""

    def wait(self, queues: Sequence[str], timeout: float) -> None: ...

    def notify(self, queue: str) -> None: ...

    def found_work(self) -> None: ...


class Subscription(Protocol):
    """Deliveries from some queues, at most `prefetch` unacknowledged per queue; closing returns the unsettled."""

    def next_delivery(self, timeout: float) -> Delivery | None: ...

    def drain(self, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries already received, without waiting."""
        ...

    def ack(self, delivery: Delivery) -> None: ...

    def requeue(self, delivery: Delivery) -> None:
        """Back to its queue (counts as a delivery)."""
        ...

    def reject(self, delivery: Delivery) -> None:
        """Off its queue, to the dead-letter queue (the broker's own route: needs no publish)."""
        ...

    def set_prefetch(self, prefetch: int) -> None: ...

    def close(self) -> None: ...


class Broker(Protocol):
    """A message transport with confirmed publishing, a dead-letter queue and per-queue stats."""

    backend: str  # what health reports ("rabbitmq", "stub")

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Send every (queue, body); return once all are confirmed, else raise DispatchError."""
        ...

    def dead_letter(self, source_queue: str, body: bytes, reason: str) -> None:
        """Put `body` on the dead-letter queue with the reason and its source queue; DispatchError on failure."""
        ...

    def consume(self, queues: Sequence[str], prefetch: int) -> Subscription: ...

    def queue_stats(self, queues: Sequence[str]) -> QueueStats:
        """Ready messages and consumers of `queues` and of the dead-letter queue; DispatchError if unreachable."""
        ...

    def close(self) -> None: ...


class WorkSource(Protocol):
    """How a worker loop receives claimable work, chosen once at the composition root (the Runtime is one): with
    no `broker` it waits on `dispatch` wake-ups and claims from the store; with one it consumes its deliveries."""

    @property
    def dispatch(self) -> WakeUps: ...

    @property
    def broker(self) -> Broker | None: ...
