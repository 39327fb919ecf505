"""RabbitMQ dispatch (GEOMILL_BROKER_URL) over PostgreSQL: the broker carries ids, the database decides.

Each test gets a fresh PostgreSQL database and a fresh RabbitMQ virtual host; worker processes are real OS
processes (`geomill worker` / `geomill serve`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

import samples
from geomill.config import Settings
from geomill.dispatch.outbox import publish_outbox
from geomill.dispatch.rabbitmq import REASON_HEADER, RabbitPublisher, decode
from geomill.domain import FailurePolicy, NewJob, NewTask, make_task_id
from geomill.engine.registry import JOBS_QUEUE
from geomill.store import open_store
from procs import GEOMILL, cli, geomill_env, start, start_worker, stop, submit, tasks, wait_for, wait_terminal
from services import fresh_vhost, rabbitmqctl, wait_rabbitmq_app

WORK_QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]
DEAD_LETTER = "geomill.dead-letter"


@pytest.fixture
def amqp_url() -> Iterator[str]:
    with fresh_vhost() as url:
        yield url


def _channel(url: str) -> Any:
    return pika.BlockingConnection(pika.URLParameters(url)).channel()


def _depth(url: str, queue: str) -> tuple[int, int]:
    """(messages, consumers) of a queue."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ok = conn.channel().queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    finally:
        conn.close()


def _consumed(url: str, queues: list[str]) -> bool:
    try:
        return all(_depth(url, q)[1] > 0 for q in queues)
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
        return False


def _unacknowledged(url: str, queue: str) -> int:
    vhost = url.rsplit("/", 1)[1]
    out = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "-q", "name", "messages_unacknowledged")
    rows = dict(line.split() for line in out.stdout.splitlines() if line.strip())
    return int(rows[queue])


def _markers(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in folder.iterdir()}


# publishing


def test_publisher_confirms_and_messages_carry_ids_only(pg_url: str, amqp_url: str, tmp_path: Path) -> None:
    store = open_store(pg_url, Settings(data_dir=tmp_path))
    store.migrate()
    publisher = RabbitPublisher(amqp_url, {})
    try:
        store.create_job(NewJob(job_id="j1", job_type="fanout", params={"secret": 1}, stage_count=1))
        assert publish_outbox(store, publisher, {}) == 1
        assert publish_outbox(store, publisher, {}) == 0
        _, props, body = _channel(amqp_url).basic_get(JOBS_QUEUE, auto_ack=True)
        assert props.delivery_mode == 2  # persistent
        assert json.loads(body) == {"kind": "event", "event_id": 1, "job_id": "j1", "stage": 0}
        assert decode(body).job_id == "j1"
    finally:
        publisher.close()
        store.close()


def test_a_big_outbox_goes_out_in_confirmed_batches(pg_url: str, amqp_url: str, tmp_path: Path) -> None:
    store = open_store(pg_url, Settings(data_dir=tmp_path))
    store.migrate()
    publisher = RabbitPublisher(amqp_url, {})
    n = 1_200  # more than one outbox batch (500)
    try:
        store.create_job(NewJob(job_id="big", job_type="fanout", params={}, stage_count=1))
        tasks = [NewTask(make_task_id("big", 1, f"k{i}"), f"k{i}", "demo.work", {"key": f"k{i}"}, "default-tasks",
                         3, 60.0) for i in range(n)]
        assert store.start_stage("big", 1, "one", FailurePolicy.FAIL_JOB, tasks)
        assert publish_outbox(store, publisher, {}) == n + 1  # every task and the job_submitted event
        depth = _channel(amqp_url).queue_declare("default-tasks", passive=True).method.message_count
        assert depth == n
        publisher.close()
        publisher.close()  # idempotent
        assert publish_outbox(store, publisher, {}) == 0  # a closed publisher reopens on use
    finally:
        publisher.close()
        store.close()


# end to end, as real processes


@pytest.mark.slow
def test_mixed_queue_job_runs_each_stage_on_the_right_worker(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    source = tmp_path / "RGB.byte.tif"
    shutil.copyfile(samples.raster("RGB.byte.tif"), source)
    env = geomill_env(tmp_path / "d", pg_url, long_task_size_mb=0.5, workers=1, lease_seconds=10,
                      broker_url=amqp_url)

    def serve(mode: str, app: str) -> Any:
        return start(dict(env, GEOMILL_APP_NAME=app), "serve", "--mode", mode)

    procs = [serve("platform_only", "platform"), serve("worker_raster", "raster")]
    long_worker = None
    try:
        job_id = submit(env, "process_raster", source=str(source))
        cog = wait_for(lambda: [t for t in tasks(env, job_id) if t["stage"] == 4], 60, "the COG task")[0]
        assert cog["target_queue"] == "long-tasks"
        time.sleep(3)  # no long worker: the task waits, queued in the database and in its RabbitMQ queue
        waiting = next(t for t in tasks(env, job_id) if t["stage"] == 4)
        assert waiting["status"] == "queued" and waiting["attempt"] == 0
        assert _depth(amqp_url, "long-tasks")[0] >= 1
        long_worker = serve("worker_long", "long")
        doc = wait_terminal(env, job_id, timeout=120)
    finally:
        stop(*procs, *([long_worker] if long_worker else []))
    assert doc["status"] == "completed", doc
    by_stage = {t["stage"]: t for t in tasks(env, job_id)}
    assert by_stage[1]["target_queue"] == "raster-tasks" and by_stage[1]["executed_by_app"].startswith("raster#")
    assert set(by_stage) == {1, 4, 6}  # validate, create_cog, stac_item: the tiled path's stages plan no task
    assert by_stage[4]["target_queue"] == "long-tasks" and by_stage[4]["executed_by_app"].startswith("long#")
    assert by_stage[6]["target_queue"] == "raster-tasks" and by_stage[6]["executed_by_app"].startswith("raster#")


def test_poison_messages_are_dead_lettered_and_workers_carry_on(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    env = geomill_env(tmp_path / "d", pg_url, workers=2, broker_url=amqp_url)
    worker = start_worker(env, 2)
    try:
        wait_for(lambda: _consumed(amqp_url, WORK_QUEUES), 60, "workers consuming every queue")
        channel = _channel(amqp_url)
        props = pika.BasicProperties(delivery_mode=2)
        for queue in WORK_QUEUES:
            channel.basic_publish("", queue, b"{not json", properties=props)
            unknown = {"kind": "task", "task_id": f"no-such-task-{queue}", "job_id": "nope", "stage": 1}
            channel.basic_publish("", queue, json.dumps(unknown).encode(), properties=props)
        wait_for(lambda: _depth(amqp_url, DEAD_LETTER)[0] == 2 * len(WORK_QUEUES), 30, "dead-lettered messages")
        reasons = []
        for _ in range(2 * len(WORK_QUEUES)):
            _, p, _ = channel.basic_get(DEAD_LETTER, auto_ack=True)
            reasons.append(p.headers[REASON_HEADER])
        assert sum("undecodable" in r for r in reasons) == len(WORK_QUEUES)
        assert sum("unknown task id" in r for r in reasons) == len(WORK_QUEUES)
        listed = json.loads(cli(env, "dead-letters", "--json", "--limit", "100").stdout)
        assert sorted(d["source"] for d in listed) == sorted(f"broker:{q}" for q in WORK_QUEUES for _ in (1, 2))
        job_id = submit(env, n=5, tag="after-poison")  # the workers are unaffected
        assert wait_terminal(env, job_id, timeout=60)["status"] == "completed"
        assert all(_depth(amqp_url, q)[0] == 0 for q in WORK_QUEUES)  # nothing loops
    finally:
        stop(worker)


@pytest.fixture
def low_consumer_timeout() -> Iterator[int]:
    """RabbitMQ's consumer timeout lowered to 5 s for channels opened meanwhile (restored after)."""
    before = rabbitmqctl("eval", "application:get_env(rabbit, consumer_timeout).").stdout.strip()
    assert rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 5000).").returncode == 0
    try:
        yield 5
    finally:
        value = before.split(",")[1].rstrip("}") if before.startswith("{ok,") else "undefined"
        if value == "undefined":
            rabbitmqctl("eval", "application:unset_env(rabbit, consumer_timeout).")
        else:
            rabbitmqctl("eval", f"application:set_env(rabbit, consumer_timeout, {value}).")


def test_task_longer_than_the_consumer_timeout_completes(tmp_path: Path, pg_url: str, amqp_url: str,
                                                          low_consumer_timeout: int) -> None:
    """Acknowledged once claimed: the lease + heartbeat cover the task, not the broker's consumer timeout.

    RabbitMQ 3.10 checks the timeout on a channel tick, which a runtime set_env may not shorten, so the test also
    asserts the property that makes it irrelevant: while the task runs, no message of its queue is unacknowledged."""
    env = geomill_env(tmp_path / "d", pg_url, workers=1, broker_url=amqp_url, lease_seconds=600)
    worker = start_worker(env, 1)
    try:
        job_id = submit(env, n=1, sleep_s=4 * low_consumer_timeout, tag="long")
        wait_for(lambda: [t for t in tasks(env, job_id) if t["status"] == "processing"], 60, "the task to start")
        assert _unacknowledged(amqp_url, "default-tasks") == 0
        doc = wait_terminal(env, job_id, timeout=120)
        consumers = _depth(amqp_url, "default-tasks")[1]
    finally:
        stop(worker)
    assert doc["status"] == "completed", doc
    (task,) = tasks(env, job_id)
    assert task["attempt"] == 1
    assert consumers >= 1  # the worker's channel was not closed for a late acknowledgement


@pytest.mark.slow
def test_broker_restart_mid_job_loses_and_duplicates_nothing(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = geomill_env(tmp_path / "d", pg_url, workers=2, broker_url=amqp_url, broker_republish_seconds=10,
                      janitor_interval_seconds=2)
    worker = start_worker(env, 2)
    try:
        job_id = submit(env, n=1000, sleep_s=0.01, marker_dir=str(markers), tag="restart")
        wait_for(lambda: len(list(markers.iterdir())) >= 100, 120, "a tenth of the tasks to run")
        assert rabbitmqctl("stop_app").returncode == 0
        try:
            time.sleep(3)
        finally:
            assert rabbitmqctl("start_app").returncode == 0
            wait_rabbitmq_app()
        doc = wait_terminal(env, job_id, timeout=300)
        wait_for(lambda: _consumed(amqp_url, WORK_QUEUES), 30, "workers consuming again after the restart")
    finally:
        stop(worker)
    assert doc["status"] == "completed", doc
    done = tasks(env, job_id)
    assert len(done) == 1000 and {t["status"] for t in done} == {"completed"}
    assert {t["attempt"] for t in done} == {1}
    counts = _markers(markers)
    assert len(counts) == 1000 and set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    claims = Counter((t["executed_by_app"], t["execution_started_at"]) for t in done)
    assert max(claims.values()) > 1  # short tasks: several messages claimed in one statement (one timestamp)


def test_a_message_whose_handler_keeps_crashing_is_dead_lettered(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    from geomill.runtime import Runtime
    from geomill.worker.consumer import BrokerConsumer
    from geomill.worker.loop import WorkerLoop

    rt = Runtime.open(Settings(data_dir=tmp_path, database_url=pg_url, broker_url=amqp_url, broker_max_deliveries=3))
    assert rt.broker is not None
    try:
        consumer = BrokerConsumer(WorkerLoop(rt, ["default-tasks"]), rt.broker)
        body = json.dumps({"kind": "task", "task_id": "t", "job_id": "j", "stage": 1}).encode()
        consumer.open()
        rt.broker.publish_many([("default-tasks", body)])
        subscription = consumer.open()
        for _ in range(3):  # three failed deliveries: x-delivery-count is 3 on the fourth
            delivery = subscription.next_delivery(10.0)
            assert delivery is not None
            subscription.requeue(delivery)
        assert consumer.poll(timeout=10.0)
        consumer.close()
        (dead,) = rt.store.list_dead_letters()
    finally:
        rt.close()
    assert dead["source"] == "broker:default-tasks" and "3 deliveries" in dead["reason"]
    assert wait_for(lambda: _depth(amqp_url, DEAD_LETTER)[0] == 1, 10, "the dead letter")
    _, props, dead_body = _channel(amqp_url).basic_get(DEAD_LETTER, auto_ack=True)
    assert dead_body == body and "3 deliveries" in props.headers[REASON_HEADER]
    assert _depth(amqp_url, "default-tasks")[0] == 0


def _queued_messages(url: str, queue: str) -> int:
    try:
        return _depth(url, queue)[0]
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
        return 0


def test_lost_messages_are_republished_by_the_reconciler(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    """Messages lost after they were sent (here: the queue is purged) - the database still says the tasks are due
    and unclaimed, so the janitor sends them again; each task still runs once."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = geomill_env(tmp_path / "d", pg_url, workers=1, broker_url=amqp_url, broker_republish_seconds=2,
                      janitor_interval_seconds=1)
    platform = start(dict(env, GEOMILL_APP_NAME="platform"), "serve", "--mode", "platform_only")
    worker = None
    try:
        job_id = submit(env, n=5, marker_dir=str(markers), tag="lost")
        wait_for(lambda: _queued_messages(amqp_url, "default-tasks") >= 5, 60, "the tasks to be published")
        _channel(amqp_url).queue_purge("default-tasks")  # the messages are gone; the database is not
        worker = start_worker(env, 1)
        doc = wait_terminal(env, job_id, timeout=60)
    finally:
        stop(platform, *([worker] if worker else []))
    assert doc["status"] == "completed", doc
    counts = _markers(markers)
    assert len(counts) == 5 and set(counts.values()) == {1}, counts


def test_health_reports_broker_queues_and_fails_without_the_broker(tmp_path: Path) -> None:
    with fresh_vhost() as url:
        env = geomill_env(tmp_path / "d", None, broker_url=url)
        ok = cli(env, "health", "--json")
        doc = json.loads(ok.stdout)
        assert doc["components"]["dispatch"]["backend"] == "rabbitmq"
        assert "default-tasks" in doc["components"]["dispatch"]["queues"]
        assert doc["components"]["dispatch"]["status"] == "ok"
    bad = cli(geomill_env(tmp_path / "d", None, broker_url="amqp://guest:guest@127.0.0.1:1/"), "health", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["components"]["dispatch"]["status"] == "down"


def _consumer(tmp_path: Path, pg_url: str, amqp_url: str) -> tuple[Any, Any]:
    from geomill.runtime import Runtime
    from geomill.worker.consumer import BrokerConsumer
    from geomill.worker.loop import WorkerLoop

    rt = Runtime.open(Settings(data_dir=tmp_path, database_url=pg_url, broker_url=amqp_url))
    return rt, BrokerConsumer(WorkerLoop(rt, ["default-tasks"]), rt.broker)


def _poll_until_idle(consumer: Any) -> int:
    handled = 0
    while consumer.poll(timeout=2.0):
        handled += 1
        assert handled < 20, "messages keep coming back"
    return handled


def test_any_bytes_are_dead_lettered_and_recorded_in_postgres(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    """Issue 20: a body holding a NUL byte could not be recorded (PostgreSQL JSON text has no \\u0000), so it was
    requeued forever. Now the body is recorded as base64 with its length."""
    bodies = [b"\x00not json", bytes(range(256)), b'{"kind": "task", "task_id": "\\u0000", "job_id": "j", "stage": 1}']
    rt, consumer = _consumer(tmp_path, pg_url, amqp_url)
    try:
        rt.broker.publish_many([("default-tasks", b) for b in bodies])
        assert _poll_until_idle(consumer) == len(bodies)
        consumer.close()
        dead = rt.store.list_dead_letters()
    finally:
        rt.close()
    recorded = sorted(base64.b64decode(d["payload"]["body_base64"]) for d in dead)
    assert recorded == sorted(bodies) and all("undecodable" in d["reason"] for d in dead)
    assert sorted(d["payload"]["body_bytes"] for d in dead) == sorted(map(len, bodies))
    wait_for(lambda: _depth(amqp_url, DEAD_LETTER)[0] == len(bodies), 10, "the dead letters")
    assert _depth(amqp_url, "default-tasks")[0] == 0


def test_a_dead_letter_nobody_can_record_still_leaves_the_work_queue(tmp_path: Path, pg_url: str, amqp_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the database nor the dead-letter publish takes it: the message is rejected, and the queue's own
    dead-letter exchange moves it (no reason header then, but no endless redelivery either)."""
    from geomill.domain import DispatchError, StoreError

    def refuse_publish(*args: Any) -> None:
        raise DispatchError("no confirm")

    def refuse_record(*args: Any, **kwargs: Any) -> None:
        raise StoreError("cannot record")
    rt, consumer = _consumer(tmp_path, pg_url, amqp_url)
    try:
        rt.broker.publish_many([("default-tasks", b"\x00")])
        monkeypatch.setattr(rt.broker, "dead_letter", refuse_publish)
        monkeypatch.setattr(rt.store, "add_dead_letter", refuse_record)
        assert _poll_until_idle(consumer) == 1
        consumer.close()
    finally:
        rt.close()
    wait_for(lambda: _depth(amqp_url, DEAD_LETTER)[0] == 1, 10, "the rejected message on the dead-letter queue")
    _, props, body = _channel(amqp_url).basic_get(DEAD_LETTER, auto_ack=True)
    assert body == b"\x00" and props.headers["x-death"][0]["reason"] == "rejected"
    assert _depth(amqp_url, "default-tasks")[0] == 0


def test_a_worker_process_stops_on_sigterm_without_a_traceback(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    """Issue 20: the consumer thread's `_stop` attribute shadowed Thread._stop, so every RabbitMQ worker process
    crashed in Thread.join on shutdown with "TypeError: 'Event' object is not callable"."""
    env = geomill_env(tmp_path / "d", pg_url, workers=1, broker_url=amqp_url)
    proc = subprocess.Popen([*GEOMILL, "worker", "--processes", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: _consumed(amqp_url, WORK_QUEUES), 60, "the worker consuming every queue")
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert "Traceback" not in err and "not callable" not in err, err
    assert proc.returncode == 0, err
