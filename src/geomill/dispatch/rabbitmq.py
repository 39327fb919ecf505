"""RabbitMQ dispatch (AMQP 0-9-1, pika): durable quorum queues, persistent messages, publisher confirms, a
dead-letter exchange. The database stays the single source of truth: a message names one task or event by id, and
its handler claims that row with a guarded update, so a duplicate, late or replayed message changes nothing.

Two connections per process, each owned by one thread:
- ``RabbitPublisher`` (aio-pika on its own event-loop thread), used by the thread that commits work (outbox
  publishing, dead-lettering): a batch is published with all its confirms in flight at once; it reconnects on the
  next publish after a failure.
- ``QueueConsumer``, a thread that consumes the process's queues into an in-process inbox; acknowledgements are
  handed to it with ``add_callback_threadsafe``. It reconnects with backoff and consumes again after a broker
  restart; messages not acknowledged on the old connection come back from the broker, and their claims (already
  done, or not) make them harmless.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pika
import pika.exceptions
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from geomill.domain import DispatchError

log = logging.getLogger(__name__)

DEAD_LETTER = "dead-letter"  # logical name of the dead-letter exchange and queue (queue_names may rename it)
DEFAULT_DEAD_LETTER = "geomill.dead-letter"
REASON_HEADER = "x-geomill-reason"
SOURCE_HEADER = "x-geomill-source-queue"
DELIVERY_LIMIT = 20  # the broker's own safety net; handlers dead-letter with a reason long before this


class TaskMessage(BaseModel):
    kind: Literal["task"]
    task_id: str = Field(min_length=1)
    job_id: str
    stage: int


class EventMessage(BaseModel):
    kind: Literal["event"]
    event_id: int
    job_id: str
    stage: int


Message = Annotated[TaskMessage | EventMessage, Field(discriminator="kind")]
_message = TypeAdapter(Message)


class UndecodableMessage(DispatchError):
    """A message that is not a geomill message at all."""


def decode(body: bytes) -> TaskMessage | EventMessage:
    """The message in `body`, or UndecodableMessage naming what is wrong."""
    try:
        return _message.validate_json(body)
    except ValidationError as exc:
        raise UndecodableMessage(f"undecodable message: {exc.errors()[0]['msg']} at "
                                 f"{'.'.join(map(str, exc.errors()[0]['loc'])) or 'top level'}") from exc


def dead_letter_name(queue_names: Mapping[str, str]) -> str:
    return queue_names.get(DEAD_LETTER, DEFAULT_DEAD_LETTER)


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
    return params


class RabbitPublisher:
    """Persistent messages with publisher confirms, many in flight at once: a batch of N messages costs about one
    confirm round trip, not N (pika's blocking channel waits for each confirm, which capped the outbox at about
    500 messages/s). aio-pika runs on a private event-loop thread; callers stay synchronous and get DispatchError
    unless every message of the batch was confirmed. A retried batch may send some messages twice: harmless, as
    every handler claims by id."""

    def __init__(self, url: str, queue_names: Mapping[str, str], timeout: float = 30.0) -> None:
        self.url = url
        self.dead_letter = dead_letter_name(queue_names)
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._channel: Any = None
        self._declared: set[str] = set()

    def publish_many(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Send every (queue, body) at once and wait for all the confirms."""
        if messages:
            encoded = [(q, json.dumps(body).encode(), {}) for q, body in messages]
            self._run(self._send(encoded, exchange=None), what=f"{len(messages)} message(s)")

    def dead_letter_message(self, source_queue: str, body: bytes, reason: str) -> None:
        """Move a message to the dead-letter exchange, with the reason and its queue in headers."""
        headers = {REASON_HEADER: reason[:1000], SOURCE_HEADER: source_queue}
        self._run(self._send([("", body, headers)], exchange=self.dead_letter), what="a dead letter")

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(5)
        except Exception:  # closing a connection the broker already dropped
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._loop = self._thread = None

    # the event-loop side

    def _run(self, coro: Any, what: str) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="geomill-publisher", daemon=True)
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            future.result(self.timeout)
        except DispatchError:
            raise
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise DispatchError(f"RabbitMQ did not confirm {what} within {self.timeout:g} s") from exc

    async def _send(self, messages: list[tuple[str, bytes, dict[str, Any]]], exchange: str | None) -> None:
        for attempt in (1, 2):  # a connection the broker dropped while idle fails once; the second try reconnects
            try:
                channel = await self._open()
                target = channel.default_exchange if exchange is None else await channel.get_exchange(exchange)
                for name in {q for q, _, _ in messages} - self._declared if exchange is None else ():
                    await _declare_async(channel, [name], self.dead_letter)
                    self._declared.add(name)
                await asyncio.gather(*(target.publish(aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json",
                    headers=headers or None), routing_key=key, mandatory=exchange is None)
                    for key, body, headers in messages))
                return
            except (aio_pika.exceptions.AMQPException, aiormq.exceptions.AMQPError, ConnectionError, OSError,
                    asyncio.TimeoutError) as exc:
                await self._close()
                if attempt == 2:
                    raise DispatchError(f"cannot publish to RabbitMQ: {exc!r}") from exc

    async def _open(self) -> Any:
        if self._conn is None or self._conn.is_closed or self._channel is None or self._channel.is_closed:
            await self._close()
            self._conn = await aio_pika.connect(self.url, timeout=5)
            self._channel = await self._conn.channel(publisher_confirms=True)
            await _declare_async(self._channel, [], self.dead_letter)
        return self._channel

    async def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._declared.clear()
        if conn is not None and not conn.is_closed:
            try:
                await conn.close()
            except Exception:
                pass


async def _declare_async(channel: Any, queues: Sequence[str], dead_letter: str) -> None:
    """`declare_queues` for the aio-pika publisher: the same exchange, queues and arguments."""
    exchange = await channel.declare_exchange(dead_letter, aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await channel.declare_queue(dead_letter, durable=True, arguments={"x-queue-type": "quorum"})
    await dlq.bind(exchange)
    for name in queues:
        await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-dead-letter-exchange": dead_letter, "x-delivery-limit": DELIVERY_LIMIT})


@dataclass(frozen=True)
class Delivery:
    """One message as consumed: acknowledge it through its consumer, which owns the connection."""

    queue: str
    body: bytes
    delivery_tag: int
    delivery_count: int  # x-delivery-count of quorum queues: earlier deliveries that were not acknowledged
    channel: Any


class QueueConsumer(threading.Thread):
    """Consumes `queues` into `inbox` with `prefetch` unacknowledged messages per queue; reconnects with backoff."""

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
        self._stop = threading.Event()
        self._conn: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._qos = prefetch  # what the channel was last told

    def run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._consume()
                backoff = 0.2
            except Exception as exc:  # noqa: BLE001 - whatever broke the connection, this thread must go on consuming
                self.connected.clear()
                log.warning("RabbitMQ connection lost (%r); reconnecting in %.1f s", exc, backoff)
                self._stop.wait(backoff)
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
            log.info("consuming %s from RabbitMQ", ",".join(self.queues))
            while not self._stop.is_set():
                conn.process_data_events(time_limit=0.2)
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
            self.inbox.put(Delivery(name, body, method.delivery_tag, count, channel))
        return on_message

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, lambda ch: ch.basic_ack(delivery.delivery_tag))

    def requeue(self, delivery: Delivery) -> None:
        """Give the message back (counts as a delivery: a message that keeps failing is dead-lettered)."""
        self._settle(delivery, lambda ch: ch.basic_nack(delivery.delivery_tag, requeue=True))

    def _settle(self, delivery: Delivery, action: Any) -> None:
        """Run `action` on the consumer's thread; a message of a connection since lost is redelivered anyway."""
        conn = self._conn

        def run() -> None:
            if delivery.channel.is_open:
                action(delivery.channel)
        if conn is None:
            return
        try:
            conn.add_callback_threadsafe(run)
        except (pika.exceptions.AMQPError, OSError, AttributeError):
            log.info("acknowledgement dropped: its connection is gone (the message comes back and is dropped then)")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop consuming and close; unacknowledged messages go back to their queues."""
        self._stop.set()
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



def queue_stats(url: str, queues: Sequence[str], queue_names: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Messages ready and consumers of each queue (passive declares: nothing is created). DispatchError if the
    broker cannot be reached; a queue not declared yet shows as absent."""
    names = [queue_names.get(q, q) for q in queues] + [dead_letter_name(queue_names)]
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
