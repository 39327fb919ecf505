"""The broker consumer's logic on the in-memory StubBroker over a SQLite runtime: batching, poison messages,
dead letters that cannot be recorded, stale messages, giving work back on stop (no network)."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from geomill.dispatch.messages import REASON_HEADER
from geomill.dispatch.outbox import publish_outbox
from geomill.dispatch.rabbitmq import QueueConsumer
from geomill.dispatch.stub import StubBroker
from geomill.domain import DispatchError, NewJob, StoreError, Task
from geomill.runtime import Runtime
from geomill.worker.consumer import BrokerConsumer
from geomill.worker.loop import WorkerLoop

Q = "default-tasks"
DLQ = "geomill.dead-letter"


class Harness:
    """A runtime with a StubBroker, a worker loop on the jobs and default queues, and its consumer."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.broker = StubBroker()
        rt.broker = self.broker
        self.started: list[str] = []
        self.stop_after_first = False
        self.loop = WorkerLoop(rt, ["jobs", Q], on_task=self.on_task)
        self.consumer = BrokerConsumer(self.loop, self.broker)

    def on_task(self, task: Task | None) -> None:
        if task is not None:
            self.started.append(task.task_id)
            if self.stop_after_first:
                self.loop.stop.set()

    def submit(self, n: int, tag: str = "") -> str:
        job, _ = self.rt.store.create_job(NewJob(job_id=f"j{n}{tag}", job_type="fanout", params={"n": n, "tag": tag},
                                                 stage_count=1))
        publish_outbox(self.rt.store, self.broker, {})
        return job.job_id

    def plan(self, n: int) -> list[str]:
        """Submit a job and handle its job_submitted event: its n task messages are then on the queue."""
        job_id = self.submit(n)
        assert self.consumer.poll(timeout=1.0)
        assert self.depth(Q) == n
        return [t.task_id for t in self.rt.store.stage_tasks(job_id, 1)]

    def send(self, *bodies: bytes) -> None:
        self.broker.publish_many([(Q, b) for b in bodies])

    def depth(self, queue: str) -> int:
        return self.broker.queue_stats([queue])[queue]["messages"]

    def drain(self) -> int:
        """Poll until nothing comes: how many rounds handled something (fails if messages keep coming back)."""
        rounds = 0
        while self.consumer.poll(timeout=0.05):
            rounds += 1
            assert rounds < 100, "messages keep coming back"
        return rounds


@pytest.fixture
def h(make_runtime: Callable[..., Runtime]) -> Iterator[Harness]:
    harness = Harness(make_runtime(broker_max_deliveries=3))
    yield harness
    harness.consumer.close()


def _task_body(task_id: str, job_id: str = "j", stage: int = 1) -> bytes:
    return json.dumps({"kind": "task", "task_id": task_id, "job_id": job_id, "stage": stage}).encode()


def test_a_job_runs_end_to_end_through_the_stub_broker(h: Harness) -> None:
    job_id = h.submit(5)
    h.drain()
    assert h.rt.store.get_job(job_id).status == "completed"
    assert sorted(h.started) == sorted(t.task_id for t in h.rt.store.stage_tasks(job_id, 1))
    assert h.depth(Q) == 0 and h.depth("jobs") == 0 and h.depth(DLQ) == 0


ESCAPED_NUL = b'{"kind": "task", "task_id": "\\u0000", "job_id": "j", "stage": 1}'


@pytest.mark.parametrize("body", [b"\x00not json", random.Random(17).randbytes(64), b"", _task_body("t\x00nul"),
                                  ESCAPED_NUL],
                         ids=["nul", "random", "empty", "nul-in-id", "escaped-nul-in-id"])
def test_undecodable_bodies_are_dead_lettered_with_their_bytes_and_never_redelivered(h: Harness, body: bytes) -> None:
    h.send(body)
    assert h.drain() == 1  # handled once: not requeued in a loop
    (dead,) = h.rt.store.list_dead_letters()
    assert dead["source"] == f"broker:{Q}" and "undecodable" in dead["reason"]
    payload = dead["payload"] if isinstance(dead["payload"], dict) else json.loads(dead["payload"])
    assert base64.b64decode(payload["body_base64"]) == body and payload["body_bytes"] == len(body)
    (letter,) = h.broker.dead_lettered()
    assert letter.body == body and "undecodable" in letter.headers[REASON_HEADER]
    assert h.depth(Q) == 0 and not h.consumer.open().unacked  # type: ignore[attr-defined]


def test_a_dead_letter_the_database_refuses_still_leaves_the_work_queue(h: Harness,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StoreError("\\u0000 cannot be converted to text")
    monkeypatch.setattr(h.rt.store, "add_dead_letter", refuse)
    h.send(b"\x00")
    assert h.drain() == 1
    assert h.depth(Q) == 0 and h.depth(DLQ) == 1


def test_a_dead_letter_the_broker_cannot_take_is_rejected_to_the_dead_letter_queue(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise DispatchError("no confirm")
    monkeypatch.setattr(h.broker, "dead_letter", refuse)
    h.send(b"{not json")
    assert h.drain() == 1
    assert h.depth(Q) == 0
    (letter,) = h.broker.dead_lettered()  # the queue's own dead-letter route: the body, without our reason
    assert letter.body == b"{not json" and REASON_HEADER not in letter.headers
    assert len(h.rt.store.list_dead_letters()) == 1


def test_unknown_tasks_are_dead_lettered_and_finished_ones_acknowledged_without_running(h: Harness) -> None:
    job_id = h.submit(2)
    h.drain()
    assert h.rt.store.get_job(job_id).status == "completed"
    done = [t.task_id for t in h.rt.store.stage_tasks(job_id, 1)]
    h.started.clear()
    h.send(*(_task_body(t, job_id) for t in done), _task_body("no-such-task"))
    h.drain()
    assert h.started == []
    (dead,) = h.rt.store.list_dead_letters()
    assert "unknown task id 'no-such-task'" in dead["reason"] and dead["task_id"] == "no-such-task"
    assert h.depth(Q) == 0 and h.depth(DLQ) == 1


def test_an_event_for_an_unknown_job_is_dead_lettered(h: Harness) -> None:
    h.broker.publish_many([("jobs", json.dumps({"kind": "event", "event_id": 99, "job_id": "nope",
                                                "stage": 0}).encode())])
    h.drain()
    (dead,) = h.rt.store.list_dead_letters()
    assert "unknown job 'nope'" in dead["reason"] and h.depth("jobs") == 0


def test_short_tasks_messages_are_claimed_in_one_store_call(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = h.plan(6)
    calls: list[list[str]] = []
    claim = h.rt.store.claim_tasks_by_ids

    def counting(task_ids: list[str], *args: Any) -> Any:
        calls.append(list(task_ids))
        return claim(task_ids, *args)
    monkeypatch.setattr(h.rt.store, "claim_tasks_by_ids", counting)
    monkeypatch.setattr(h.loop, "_last_task_seconds", 0.0)  # the last task was short: batch
    assert h.consumer.poll(timeout=1.0)
    assert calls == [ids]
    assert sorted(h.started) == sorted(ids) and h.depth(Q) == 0


def test_after_a_long_task_messages_are_claimed_one_at_a_time(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.plan(3)
    calls: list[int] = []
    claim = h.rt.store.claim_tasks_by_ids
    def counting(task_ids: list[str], *args: Any) -> Any:
        calls.append(len(task_ids))
        return claim(task_ids, *args)
    monkeypatch.setattr(h.rt.store, "claim_tasks_by_ids", counting)
    monkeypatch.setattr(h.loop, "_last_task_seconds", 5.0)
    assert h.consumer.poll(timeout=1.0)
    assert calls == [1] and h.depth(Q) == 2


def test_a_handler_that_keeps_crashing_is_dead_lettered_after_the_delivery_limit(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = h.plan(1)

    def crash(*args: Any) -> None:
        raise RuntimeError("bug")
    monkeypatch.setattr(h.rt.store, "claim_tasks_by_ids", crash)
    assert h.drain() == 4  # three crashes (each requeued), then dead-lettered on the fourth delivery
    (dead,) = h.rt.store.list_dead_letters()
    assert "handler failed on 3 deliveries" in dead["reason"]
    assert h.broker.dead_lettered()[0].body == _task_body(ids[0], h.rt.store.get_task(ids[0]).job_id)


def test_on_stop_claimed_but_unstarted_tasks_are_given_back_and_republished(h: Harness,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ids = h.plan(3)
    monkeypatch.setattr(h.loop, "_last_task_seconds", 0.0)
    h.stop_after_first = True
    assert h.consumer.poll(timeout=1.0)
    assert len(h.started) == 1
    waiting = [h.rt.store.get_task(i) for i in ids if i not in h.started]
    assert [(t.status, t.attempt) for t in waiting] == [("queued", 0), ("queued", 0)]  # the attempt does not count
    assert publish_outbox(h.rt.store, h.broker, {}) == 2 and h.depth(Q) == 2  # sent again: nothing is lost


def test_on_stop_received_deliveries_are_requeued(h: Harness) -> None:
    h.plan(3)
    subscription = h.consumer.open()
    first = subscription.next_delivery(1.0)
    assert first is not None
    h.loop.stop.set()
    h.consumer.handle_batch([first])  # stopping: not claimed, back to the queue
    h.consumer.run()  # returns at once and closes the subscription
    assert h.started == [] and h.depth(Q) == 3
    assert h.broker.queue_stats([Q])[Q]["consumers"] == 0
    assert all(t.status == "queued" and t.attempt == 0 for t in h.rt.store.list_tasks(h.rt.store.list_jobs()[0].job_id))


def test_the_rabbitmq_consumer_thread_stops_cleanly() -> None:
    """Issue 20: `self._stop` shadowed Thread._stop, so join() raised "'Event' object is not callable"."""
    consumer = QueueConsumer("amqp://guest:guest@127.0.0.1:1/", [Q], {}, prefetch=1)  # nothing listens there
    consumer.start()
    time.sleep(0.1)
    consumer.close(timeout=5)
    assert not consumer.is_alive()
