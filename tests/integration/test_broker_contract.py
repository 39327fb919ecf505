"""The Broker contract (engine/dispatch_ports.py): the in-memory StubBroker and RabbitMQ behave alike, so unit
tests of the consumer logic on the stub say something about RabbitMQ. Each RabbitMQ test gets a fresh vhost (it
skips locally without RabbitMQ and fails under CI, as tests/services.py decides)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from geomill.dispatch.rabbitmq import RabbitBroker
from geomill.dispatch.stub import StubBroker
from geomill.domain import DispatchError
from geomill.engine.dispatch_ports import Broker, Delivery, Subscription
from services import fresh_vhost

Q, Q2, DLQ = "contract-a", "contract-b", "geomill.dead-letter"


@pytest.fixture(params=["stub", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "stub":
        stub = StubBroker()
        yield stub
        stub.close()
        return
    with fresh_vhost() as url:
        rabbit = RabbitBroker(url, {})
        try:
            yield rabbit
        finally:
            rabbit.close()


@pytest.fixture
def subscribe(broker: Broker) -> Iterator[Callable[..., Subscription]]:
    opened: list[Subscription] = []

    def open_(queues: list[str] | None = None, prefetch: int = 10) -> Subscription:
        opened.append(broker.consume(queues or [Q], prefetch))
        return opened[-1]
    yield open_
    for sub in opened:
        sub.close()


def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """RabbitMQ settles asynchronously: wait for what the stub shows at once."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
    return value


def take(sub: Subscription, n: int, timeout: float = 10.0) -> list[Delivery]:
    got: list[Delivery] = []
    while len(got) < n:
        delivery = sub.next_delivery(timeout)
        assert delivery is not None, f"only {len(got)} of {n} deliveries arrived"
        got.append(delivery)
    return got


def ready(broker: Broker, queue: str = Q) -> int:
    return broker.queue_stats([queue])[queue]["messages"]


def test_published_messages_are_delivered_in_order_and_gone_once_acknowledged(
        broker: Broker, subscribe: Callable[..., Subscription]) -> None:
    broker.publish_many([(Q, b"one"), (Q, b"two"), (Q, b"\x00three")])
    broker.publish_many([])  # nothing to send is no error
    assert eventually(lambda: ready(broker) == 3)
    sub = subscribe()
    got = take(sub, 3)
    assert [(d.queue, d.body, d.delivery_count) for d in got] == [(Q, b"one", 0), (Q, b"two", 0), (Q, b"\x00three", 0)]
    for d in got:
        sub.ack(d)
    assert sub.next_delivery(0.3) is None
    sub.close()
    assert eventually(lambda: broker.queue_stats([Q])[Q] == {"messages": 0, "consumers": 0})


def test_a_requeued_message_comes_back_with_one_more_delivery_counted(
        broker: Broker, subscribe: Callable[..., Subscription]) -> None:
    broker.publish_many([(Q, b"m")])
    sub = subscribe()
    (first,) = take(sub, 1)
    sub.requeue(first)
    (again,) = take(sub, 1)
    assert again.body == b"m" and again.delivery_count == 1
    sub.ack(again)


def test_a_rejected_message_goes_to_the_dead_letter_queue(broker: Broker,
                                                          subscribe: Callable[..., Subscription]) -> None:
    broker.publish_many([(Q, b"poison")])
    sub = subscribe()
    (d,) = take(sub, 1)
    sub.reject(d)
    assert eventually(lambda: ready(broker, DLQ) == 1)
    assert ready(broker) == 0 and sub.next_delivery(0.3) is None


def test_dead_letter_publishes_to_the_dead_letter_queue(broker: Broker) -> None:
    broker.dead_letter(Q, b"\xff\x00 any bytes", "undecodable message: test")
    assert eventually(lambda: ready(broker, DLQ) == 1)


def test_prefetch_bounds_the_unacknowledged_deliveries_per_queue(
        broker: Broker, subscribe: Callable[..., Subscription]) -> None:
    broker.publish_many([(Q, str(i).encode()) for i in range(5)])
    sub = subscribe(prefetch=2)
    first = take(sub, 2)
    assert sub.next_delivery(0.5) is None  # two unacknowledged: no third
    sub.ack(first[0])
    (third,) = take(sub, 1)
    assert third.body == b"2"
    sub.set_prefetch(5)
    rest = take(sub, 2)  # raised: the rest arrive without more acknowledgements
    assert sorted(d.body for d in rest) == [b"3", b"4"]


def test_closing_a_subscription_returns_its_unacknowledged_deliveries(
        broker: Broker, subscribe: Callable[..., Subscription]) -> None:
    broker.publish_many([(Q, b"a"), (Q, b"b")])
    sub = subscribe()
    a, _ = take(sub, 2)
    sub.ack(a)
    sub.close()
    assert eventually(lambda: broker.queue_stats([Q])[Q] == {"messages": 1, "consumers": 0})
    (back,) = take(subscribe(), 1)
    assert back.body == b"b" and back.delivery_count == 1


def test_one_subscription_consumes_several_queues(broker: Broker, subscribe: Callable[..., Subscription]) -> None:
    sub = subscribe([Q, Q2])
    broker.publish_many([(Q, b"a"), (Q2, b"b")])
    got = take(sub, 2)
    assert sorted((d.queue, d.body) for d in got) == [(Q, b"a"), (Q2, b"b")]
    stats = eventually(lambda: (s := broker.queue_stats([Q, Q2])) and s[Q]["consumers"] == 1 and s)
    assert stats[Q2]["consumers"] == 1 and stats[DLQ]["consumers"] == 0
    assert sub.drain(5) == []  # nothing more received: drain does not wait


def test_stats_show_undeclared_queues_as_absent(broker: Broker) -> None:
    stats = broker.queue_stats(["never-declared"])
    assert stats["never-declared"] == {"messages": 0, "consumers": 0, "absent": 1}


def test_an_unreachable_broker_raises_dispatch_error() -> None:
    stub = StubBroker()
    stub.down = True
    rabbit = RabbitBroker("amqp://guest:guest@127.0.0.1:1/", {})
    for broker in (stub, rabbit):
        with pytest.raises(DispatchError):
            broker.publish_many([(Q, b"x")])
        with pytest.raises(DispatchError):
            broker.queue_stats([Q])
    rabbit.close()
