"""Broker messages: ids only, decoded strictly (no network)."""

from __future__ import annotations

import json

import pytest

from geomill.config import Settings
from geomill.dispatch.rabbitmq import EventMessage, TaskMessage, UndecodableMessage, dead_letter_name, decode
from geomill.engine.ports import PendingMessage


def test_pending_work_becomes_a_message_of_ids_only() -> None:
    task = PendingMessage("j", 2, task_id="t", queue="raster-tasks")
    assert task.body() == {"kind": "task", "task_id": "t", "job_id": "j", "stage": 2}
    event = PendingMessage("j", 0, event_id=7)
    assert event.body() == {"kind": "event", "event_id": 7, "job_id": "j", "stage": 0}
    assert decode(json.dumps(task.body()).encode()) == TaskMessage(kind="task", task_id="t", job_id="j", stage=2)
    assert decode(json.dumps(event.body()).encode()) == EventMessage(kind="event", event_id=7, job_id="j", stage=0)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"kind": "shrug"}', b'{"kind": "task", "job_id": "j"}',
                                  b'{"kind": "event", "event_id": "x", "job_id": "j", "stage": 0}', b"\xff\xfe"])
def test_anything_else_is_undecodable_and_says_why(body: bytes) -> None:
    with pytest.raises(UndecodableMessage, match="undecodable message: .+"):
        decode(body)


def test_the_broker_is_off_unless_configured_and_the_dead_letter_queue_can_be_renamed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOMILL_BROKER_URL", raising=False)
    assert Settings().broker_url is None
    monkeypatch.setenv("GEOMILL_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    assert Settings().broker_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert dead_letter_name({}) == "geomill.dead-letter"
    assert dead_letter_name({"dead-letter": "prod-dlq"}) == "prod-dlq"
