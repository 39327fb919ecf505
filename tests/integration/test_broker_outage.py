"""A RabbitMQ outage (issue 25 item 5), through a loopback TCP proxy that is cut and restored: the AMQP libraries
stay quiet, geomill logs one WARNING when a connection is lost and one INFO when it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from geomill.dispatch.rabbitmq import RabbitBroker
from geomill.dispatch.rabbitmq_publisher import AMQP_LOGGERS
from geomill.domain import DispatchError
from services import fresh_vhost
from tcp_proxy import TcpProxy

QUEUE = "geomill.outage-tasks"


@pytest.fixture
def proxied_url() -> Iterator[tuple[str, TcpProxy]]:
    with fresh_vhost() as url:
        parts = urlsplit(url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
        try:
            yield proxy.url(url), proxy
        finally:
            proxy.close()


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_an_outage_logs_one_line_when_lost_and_one_when_back(
    proxied_url: tuple[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = proxied_url
    broker = RabbitBroker(url, {})
    consumer = broker.consume([QUEUE], prefetch=1)
    try:
        _wait(consumer.connected.is_set, 20)
        assert consumer.connected.is_set()
        broker.publish_many([(QUEUE, b"before")])
        with caplog.at_level(logging.DEBUG):
            proxy.cut()
            _wait(lambda: not consumer.connected.is_set(), 10)
            for _ in range(3):  # several publishes during the outage, each failing
                with pytest.raises(DispatchError):
                    broker.publish_many([(QUEUE, b"during")])
            time.sleep(3)  # several reconnect attempts of the consumer
            proxy.restore()
            _wait(lambda: consumer.connections >= 2, 30)
            assert consumer.connections >= 2
            broker.publish_many([(QUEUE, b"after")])
        library = [r for r in caplog.records if r.name.split(".")[0] in AMQP_LOGGERS and r.levelno >= logging.WARNING]
        assert library == [], [r.getMessage() for r in library]
        ours = [(r.name, r.levelname, r.getMessage()) for r in caplog.records
                if r.name.startswith("geomill.dispatch") and r.levelno >= logging.INFO]
        warnings = [m for _, level, m in ours if level == "WARNING"]
        backs = [m for _, level, m in ours if level == "INFO" and "back" in m]
        assert len(warnings) == 2, ours  # the consumer's connection and the publisher's, once each
        assert len(backs) == 2, ours
    finally:
        consumer.close()
        broker.close()
