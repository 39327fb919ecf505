"""The outbox (dispatch/outbox.py) and the dispatch composition (open_broker, dispatch_health) on the StubBroker."""

from __future__ import annotations

import json
from collections.abc import Callable

from geomill.dispatch import dispatch_health, open_broker
from geomill.dispatch.outbox import Outbox, publish_outbox
from geomill.dispatch.rabbitmq import RabbitBroker
from geomill.dispatch.stub import StubBroker
from geomill.domain import NewJob
from geomill.runtime import Runtime


def _job(rt: Runtime, tag: str) -> str:
    job, _ = rt.store.create_job(NewJob(job_id=f"j-{tag}", job_type="fanout", params={"n": 1, "tag": tag},
                                        stage_count=1))
    return job.job_id


def test_the_outbox_sends_ids_only_and_sends_nothing_twice(make_runtime: Callable[..., Runtime]) -> None:
    rt, broker = make_runtime(), StubBroker()
    job_id = _job(rt, "a")
    assert publish_outbox(rt.store, broker, {"jobs": "prod-jobs"}) == 1
    assert publish_outbox(rt.store, broker, {"jobs": "prod-jobs"}) == 0
    (message,) = broker.queues["prod-jobs"]
    assert json.loads(message.body) == {"kind": "event", "event_id": 1, "job_id": job_id, "stage": 0}


def test_a_failed_publish_is_sent_on_the_next_pass_and_the_supervisor_pass_never_raises(
        make_runtime: Callable[..., Runtime]) -> None:
    rt, broker = make_runtime(broker_publish_interval_seconds=0.01), StubBroker()
    rt.broker = broker
    outbox = Outbox.open(rt)
    assert outbox is not None
    _job(rt, "b")
    broker.down = True
    assert outbox.send_due() == 0  # logged, not raised
    broker.down = False
    assert outbox.send_due() == 0  # within the publish interval: not yet
    outbox._next = 0.0
    assert outbox.send_due() == 1 and broker.published == 1
    assert outbox.send_due(republish_after_seconds=0.0) == 1  # still unclaimed: sent again, and counted
    assert rt.store.counters()["republished_messages"] == 1  # type: ignore[attr-defined]


def test_without_a_broker_there_is_no_outbox_and_health_names_the_wake_ups(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime()
    assert open_broker(rt.settings) is None and rt.broker is None and Outbox.open(rt) is None
    assert dispatch_health(rt, ["default-tasks"], {}) == {"backend": "PollingDispatch"}


def test_with_a_broker_health_shows_each_queue_and_the_dead_letter_queue(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(broker_url="amqp://guest:guest@127.0.0.1:1/")
    assert isinstance(open_broker(rt.settings), RabbitBroker)  # no connection opened yet
    rt.broker = StubBroker()
    rt.broker.publish_many([("prod-default", b"x")])
    doc = dispatch_health(rt, ["default-tasks", "jobs"], {"default-tasks": "prod-default"})
    assert doc == {"backend": "stub", "queues": {
        "prod-default": {"messages": 1, "consumers": 0},
        "jobs": {"messages": 0, "consumers": 0, "absent": 1},
        "geomill.dead-letter": {"messages": 0, "consumers": 0}}}


def test_dispatch_and_the_store_agree_on_wake_up_channels_and_database_urls() -> None:
    """dispatch/ imports nothing from store/, so the two names it shares with the store are checked here."""
    from geomill.dispatch import POSTGRES_SCHEMES
    from geomill.engine.dispatch_ports import wake_channel
    from geomill.store import POSTGRES_SCHEMES as STORE_SCHEMES
    from geomill.store.postgres_queries import channel_for

    assert wake_channel("raster-tasks") == channel_for("raster-tasks") == "geomill_raster-tasks"
    assert POSTGRES_SCHEMES == STORE_SCHEMES
