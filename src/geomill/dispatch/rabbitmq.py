"""RabbitMQ dispatch (AMQP 0-9-1): durable quorum queues, persistent messages, publisher confirms, a dead-letter
exchange. The database stays the single source of truth: a message names one task or event by id, and its handler
claims that row with a guarded update, so a duplicate, late or replayed message changes nothing.

Two connections per process, each owned by one thread:
- ``RabbitPublisher`` (rabbitmq_publisher.py, aio-pika on its own event-loop thread), used by the thread that
  commits work (outbox publishing, dead-lettering);
- ``QueueConsumer`` (pika), a thread that consumes the process's queues into an in-process inbox; settlements are
  handed to it with ``add_callback_threadsafe``. It reconnects with backoff and consumes again after a broker
  restart; messages not acknowledged on the old connection come back from the broker, and their claims (already
  done, or not) make them harmless.
``RabbitBroker`` puts both behind the Broker port (engine/dispatch_ports.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pika
import pika.exceptions

from geomill.dispatch.messages import (
    DEAD_LETTER,
    DEFAULT_DEAD_LETTER,
    DELIVERY_LIMIT,
    REASON_HEADER,
    SOURCE_HEADER,
    EventMessage,
    TaskMessage,
    UndecodableMessage,
    dead_letter_name,
    decode,
)
from geomill.dispatch.rabbitmq_publisher import HEARTBEAT_SECONDS, RabbitPublisher, quiet_amqp_loggers
from geomill.domain import DispatchError
from geomill.engine.dispatch_ports import Delivery, QueueStats

log = logging.getLogger(__name__)

__all__ = [
    "DEAD_LETTER",
    "DEFAULT_DEAD_LETTER",
    "DELIVERY_LIMIT",
    "REASON_HEADER",
    "SOURCE_HEADER",
    "Delivery",
    "EventMessage",
    "QueueConsumer",
    "RabbitBroker",
    "RabbitPublisher",
    "TaskMessage",
    "UndecodableMessage",
    "dead_letter_name",
    "declare_queues",
    "decode",
]


def declare_queues(channel: Any, queues: Sequence[str], dead_letter: str) -> None:
    """Durable quorum queues that dead-letter to `dead_letter` (a fanout exchange bound to a queue of that name)."""
    channel.exchange_declare(dead_letter, exchange_type="fanout", durable=True)
    channel.queue_declare(dead_letter, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(dead_letter, dead_letter)
    for name in queues:
        channel.queue_declare(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-dead-letter-exchange": dead_letter, "x-delivery-limit": DELIVERY_LIMIT})


def _parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    params.heartbeat = HEARTBEAT_SECONDS  # a silent broker (partition) ends the connection within ~2 heartbeats
    return params


class RabbitBroker:
    """The Broker port over RabbitMQ: one lazily opened publisher, a consumer thread per subscription."""

    backend = "rabbitmq"

    def __init__(self, url: str, queue_names: Mapping[str, str]) -> None:
        self.url = url
        self.queue_names = dict(queue_names)
        self.publisher = RabbitPublisher(url, queue_names)

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.publisher.publish_many(messages)

    def dead_letter(self, source_queue: str, body: bytes, reason: str) -> None:
        self.publisher.dead_letter_message(source_queue, body, reason)

    def consume(self, queues: Sequence[str], prefetch: int) -> QueueConsumer:
        consumer = QueueConsumer(self.url, queues, self.queue_names, prefetch)
        consumer.start()
        return consumer

    def queue_stats(self, queues: Sequence[str]) -> QueueStats:
        return _stats(self.url, list(queues) + [dead_letter_name(self.queue_names)])

    def close(self) -> None:
        self.publisher.close()


class QueueConsumer(threading.Thread):
    """A Subscription: consumes `queues` into `inbox` with `prefetch` unacknowledged messages per queue;
    reconnects with backoff."""

    def __init__(self, url: str, queues: Sequence[str], queue_names: Mapping[str, str], prefetch: int,
                 max_backoff: float = 10.0) -> None:
        super().__init__(name="geomill-broker-consumer", daemon=True)
        self.url = url
        self.queues = list(queues)
        self.dead_letter = dead_letter_name(queue_names)
        self.prefetch = prefetch
        self.max_backoff = max_backoff
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.connected = threading.Event()
        self.connections = 0  # how many times it (re)connected: tests check it resumed after a restart
        # not `_stop`: that would shadow Thread._stop(), which join() calls (TypeError: 'Event' is not callable)
        self._stopping = threading.Event()
        self._conn: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._qos = prefetch  # what the channel was last told
        self._lost = False  # logged as lost: the next connection logs that it is back
        quiet_amqp_loggers()

    def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                self._consume()
                backoff = 0.2
            except Exception as exc:  # noqa: BLE001 - whatever broke the connection, this thread must go on consuming
                self.connected.clear()
                if not self._lost:  # one line per state change, not per attempt
                    self._lost = True
                    log.warning("RabbitMQ connection lost (%r); reconnecting with backoff", exc)
                else:
                    log.debug("RabbitMQ reconnect failed (%r); next attempt in %.1f s", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _consume(self) -> None:
        conn = pika.BlockingConnection(_parameters(self.url))
        try:
            channel = conn.channel()
            declare_queues(channel, self.queues, self.dead_letter)
            channel.basic_qos(prefetch_count=self.prefetch)
            self._channel, self._qos = channel, self.prefetch
            for name in self.queues:
                channel.basic_consume(name, on_message_callback=self._receiver(name))
            self._conn = conn
            self.connections += 1
            self.connected.set()
            log.info("RabbitMQ connection %s: consuming %s", "back" if self._lost else "open", ",".join(self.queues))
            self._lost = False
            while not self._stopping.is_set():
                conn.process_data_events(time_limit=0.2)
            conn.process_data_events(time_limit=0)  # settlements handed over just before the stop go out first
        finally:
            self._conn, self._channel = None, None
            self.connected.clear()
            if conn.is_open:
                try:
                    conn.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass

    def _receiver(self, name: str) -> Any:
        def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
            count = int((props.headers or {}).get("x-delivery-count", 0) or 0)
            self.inbox.put(Delivery(name, body, count, (channel, method.delivery_tag)))
        return on_message

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda ch, tag: ch.basic_ack(tag))

    def requeue(self, delivery: Delivery) -> None:
        """Give the message back (counts as a delivery: a message that keeps failing is dead-lettered)."""
        self._settle(delivery, lambda ch, tag: ch.basic_nack(tag, requeue=True))

    def reject(self, delivery: Delivery) -> None:
        """Off the queue without a publish: its x-dead-letter-exchange routes it to the dead-letter queue."""
        self._settle(delivery, lambda ch, tag: ch.basic_reject(tag, requeue=False))

    def _settle(self, delivery: Delivery, action: Callable[[Any, int], None]) -> None:
        """Run `action` on the consumer's thread; a message of a connection since lost is redelivered anyway."""
        conn = self._conn
        channel, tag = delivery.tag

        def run() -> None:
            if channel.is_open:
                action(channel, tag)
        if conn is None:
            return
        try:
            conn.add_callback_threadsafe(run)
        except (pika.exceptions.AMQPError, OSError, AttributeError):
            log.info("acknowledgement dropped: its connection is gone (the message comes back and is dropped then)")

    def close(self, timeout: float = 5.0) -> None:
        """Stop consuming and close; unacknowledged messages go back to their queues."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def next_delivery(self, timeout: float) -> Delivery | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, limit: int) -> list[Delivery]:
        """Up to `limit` more deliveries already received, without waiting."""
        taken: list[Delivery] = []
        while len(taken) < limit:
            try:
                taken.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return taken

    def set_prefetch(self, prefetch: int) -> None:
        """Change how many unacknowledged messages per queue the broker may send (kept across reconnects).

        A per-consumer prefetch applies to consumers created after it (quorum queues have no global one), so the
        consumers are cancelled and created again; messages received but not yet handed to us are returned by the
        cancel (one more delivery each), those in the inbox stay ours."""
        self.prefetch = prefetch
        conn, channel = self._conn, self._channel
        if conn is None or channel is None or self._qos == prefetch:
            return
        self._qos = prefetch

        def run() -> None:
            if not channel.is_open:
                return
            for tag in list(channel.consumer_tags):
                channel.basic_cancel(tag)
            channel.basic_qos(prefetch_count=prefetch)
            for name in self.queues:
                channel.basic_consume(name, on_message_callback=self._receiver(name))
        try:
            conn.add_callback_threadsafe(run)
        except (pika.exceptions.AMQPError, OSError, AttributeError):
            pass  # the connection is going: the next one starts with self.prefetch


def _stats(url: str, names: Sequence[str]) -> QueueStats:
    """Passive declares: nothing is created. DispatchError if the broker cannot be reached; a queue not declared
    yet shows as absent."""
    stats: dict[str, dict[str, int]] = {}
    try:
        conn = pika.BlockingConnection(_parameters(url))
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise DispatchError(f"RabbitMQ unreachable: {exc!r}") from exc
    quiet = logging.getLogger("pika.channel")
    level, quiet.level = quiet.level, logging.ERROR  # a 404 on a passive declare is an answer, not a warning
    try:
        for name in names:
            channel = conn.channel()
            try:
                ok = channel.queue_declare(name, passive=True)
                stats[name] = {"messages": ok.method.message_count, "consumers": ok.method.consumer_count}
            except pika.exceptions.ChannelClosedByBroker:
                stats[name] = {"messages": 0, "consumers": 0, "absent": 1}
            finally:
                if channel.is_open:
                    channel.close()
    finally:
        quiet.level = level
        conn.close()
    return stats
