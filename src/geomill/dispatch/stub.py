"""An in-memory broker with RabbitMQ's semantics as geomill uses them: unit tests run the consumer logic on it.

Queues are FIFO; a subscription holds at most `prefetch` unacknowledged deliveries per queue; requeue and a closed
subscription's unsettled deliveries go back to the head of their queue with one more delivery counted; reject and
the delivery limit move a message to the dead-letter queue. Thread-safe: one lock for everything.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geomill.dispatch.messages import DELIVERY_LIMIT, REASON_HEADER, SOURCE_HEADER, dead_letter_name
from geomill.domain import DispatchError
from geomill.engine.dispatch_ports import Delivery, QueueStats


@dataclass
class StubMessage:
    body: bytes
    count: int = 0  # earlier unacknowledged deliveries (x-delivery-count)
    headers: dict[str, Any] = field(default_factory=dict)


class StubBroker:
    """The Broker port in memory. Set `down` to make every publish and stats call raise DispatchError."""

    backend = "stub"

    def __init__(self, queue_names: Mapping[str, str] | None = None, delivery_limit: int = DELIVERY_LIMIT) -> None:
        self.dead_letter_queue = dead_letter_name(queue_names or {})
        self.delivery_limit = delivery_limit
        self.down = False
        self.lock = threading.Condition()
        self.queues: dict[str, deque[StubMessage]] = {}
        self.subscriptions: list[StubSubscription] = []
        self.published = 0  # messages accepted by publish_many (tests count publishes)

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        with self.lock:
            self._check()
            for name, body in messages:
                self.declare([name]).append(StubMessage(body))
            self.published += len(messages)
            self.lock.notify_all()

    def dead_letter(self, source_queue: str, body: bytes, reason: str) -> None:
        with self.lock:
            self._check()
            self._to_dead_letters(StubMessage(body, headers={REASON_HEADER: reason[:1000],
                                                             SOURCE_HEADER: source_queue}))

    def consume(self, queues: Sequence[str], prefetch: int) -> StubSubscription:
        with self.lock:
            self._check()
            self.declare(queues)
            sub = StubSubscription(self, list(queues), prefetch)
            self.subscriptions.append(sub)
            return sub

    def queue_stats(self, queues: Sequence[str]) -> QueueStats:
        with self.lock:
            self._check()
            stats: QueueStats = {}
            for name in [*queues, self.dead_letter_queue]:
                if name not in self.queues:
                    stats[name] = {"messages": 0, "consumers": 0, "absent": 1}
                    continue
                consumers = sum(name in s.queues for s in self.subscriptions)
                stats[name] = {"messages": len(self.queues[name]), "consumers": consumers}
            return stats

    def close(self) -> None:
        for sub in list(self.subscriptions):
            sub.close()

    # helpers (call with the lock held)
    def declare(self, queues: Sequence[str]) -> deque[StubMessage]:
        """The last of `queues`, every one created if new (and the dead-letter queue)."""
        self.queues.setdefault(self.dead_letter_queue, deque())
        for name in queues:
            self.queues.setdefault(name, deque())
        return self.queues[queues[-1]] if queues else self.queues[self.dead_letter_queue]

    def dead_lettered(self) -> list[StubMessage]:
        """What the dead-letter queue holds, oldest first (tests read reasons from the headers)."""
        with self.lock:
            return list(self.queues.get(self.dead_letter_queue, ()))

    def _to_dead_letters(self, message: StubMessage) -> None:
        self.declare([]).append(message)

    def _give_back(self, queue: str, message: StubMessage) -> None:
        message.count += 1
        if message.count > self.delivery_limit:  # quorum queues' x-delivery-limit
            self._to_dead_letters(message)
        else:
            self.queues[queue].appendleft(message)
        self.lock.notify_all()

    def _check(self) -> None:
        if self.down:
            raise DispatchError("stub broker is down")


class StubSubscription:
    """A Subscription of the StubBroker: deliveries are taken from the queues on demand, within the prefetch."""

    _serials = itertools.count(1)

    def __init__(self, broker: StubBroker, queues: list[str], prefetch: int) -> None:
        self.broker = broker
        self.queues = queues
        self.prefetch = prefetch
        self.unacked: dict[int, tuple[str, StubMessage]] = {}
        self.closed = False

    def next_delivery(self, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        with self.broker.lock:
            while True:
                taken = self._take(1)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken[0] if taken else None
                self.broker.lock.wait(remaining)

    def drain(self, limit: int) -> list[Delivery]:
        with self.broker.lock:
            return self._take(limit)

    def ack(self, delivery: Delivery) -> None:
        with self.broker.lock:
            self.unacked.pop(delivery.tag, None)
            self.broker.lock.notify_all()

    def requeue(self, delivery: Delivery) -> None:
        with self.broker.lock:
            settled = self.unacked.pop(delivery.tag, None)
            if settled is not None:
                self.broker._give_back(*settled)

    def reject(self, delivery: Delivery) -> None:
        with self.broker.lock:
            settled = self.unacked.pop(delivery.tag, None)
            if settled is not None:
                self.broker._to_dead_letters(settled[1])

    def set_prefetch(self, prefetch: int) -> None:
        with self.broker.lock:
            self.prefetch = prefetch
            self.broker.lock.notify_all()

    def close(self) -> None:
        """Unsettled deliveries go back to their queues (one more delivery each), as when a connection closes."""
        with self.broker.lock:
            if self.closed:
                return
            self.closed = True
            for queue, message in reversed(list(self.unacked.values())):
                self.broker._give_back(queue, message)
            self.unacked.clear()
            self.broker.subscriptions.remove(self)

    def _take(self, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries, round robin over the queues, each queue within the prefetch."""
        taken: list[Delivery] = []
        while len(taken) < limit and not self.closed:
            before = len(taken)
            for queue in self.queues:
                held = sum(q == queue for q, _ in self.unacked.values())
                if len(taken) < limit and held < self.prefetch and self.broker.queues[queue]:
                    message = self.broker.queues[queue].popleft()
                    tag = next(self._serials)
                    self.unacked[tag] = (queue, message)
                    taken.append(Delivery(queue, message.body, message.count, tag))
            if len(taken) == before:
                break
        return taken
