"""A worker fed by RabbitMQ instead of polling the database (selected by GEOMILL_BROKER_URL).

Each message names a task or an orchestration event. The handler claims that row with a guarded update and
acknowledges the message once the claim has committed, before the task runs: the task's lease and heartbeat cover
its life from then on, so RabbitMQ's consumer timeout never applies to task execution. A message that claims
nothing (a duplicate, or stale: the task ran or is running) is acknowledged and dropped. A message that cannot be
handled at all - undecodable, naming an unknown task or job, or whose handler crashed on every delivery - goes to
the dead-letter exchange with the reason in a header, and is recorded in the database's dead letters.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from geomill.dispatch.outbox import publish_outbox
from geomill.dispatch.rabbitmq import (
    Delivery,
    EventMessage,
    QueueConsumer,
    RabbitPublisher,
    TaskMessage,
    UndecodableMessage,
    decode,
)
from geomill.domain import DispatchError, NotFound, StoreError

if TYPE_CHECKING:
    from geomill.worker.loop import WorkerLoop

log = logging.getLogger(__name__)

CONCURRENCY = 1  # a worker process runs one task at a time; its prefetch per queue


class BrokerConsumer:
    """Feeds a WorkerLoop from RabbitMQ: claim by id, acknowledge, run through the loop's `execute`."""

    def __init__(self, loop: WorkerLoop, broker_url: str) -> None:
        self.loop = loop
        self.settings = loop.rt.settings
        self.store = loop.rt.store
        names = self.settings.queue_names
        self.consumer = QueueConsumer(broker_url, loop.wait_queues, names, prefetch=CONCURRENCY)
        self.publisher = RabbitPublisher(broker_url, names)
        self._acked = False  # whether the message being handled was acknowledged already

    def run(self) -> None:
        """Consume until the loop's stop flag is set; the running task is always finished first."""
        self.consumer.start()
        try:
            while not self.loop.stop.is_set():
                delivery = self.consumer.next_delivery(timeout=0.5)
                if delivery is not None:
                    self._handle_safely(delivery)
        finally:
            self.consumer.stop()
            self.publisher.close()

    def _handle_safely(self, delivery: Delivery) -> None:
        self._acked = False
        try:
            self.handle(delivery)
        except (StoreError, DispatchError):
            log.exception("store or broker unavailable")
            self._give_back(delivery)
            time.sleep(1.0)
        except Exception:  # a handler bug: the message comes back; after broker_max_deliveries it is dead-lettered
            log.exception("message handler crashed (delivery %d)", delivery.delivery_count + 1)
            self._give_back(delivery)

    def _give_back(self, delivery: Delivery) -> None:
        """Back to its queue, unless already acknowledged (a task that failed after its claim: its lease expires
        and the janitor re-queues it)."""
        if not self._acked:
            self.consumer.requeue(delivery)

    def _ack(self, delivery: Delivery) -> None:
        self._acked = True
        self.consumer.ack(delivery)

    def handle(self, delivery: Delivery) -> None:
        """Decide what one message means and settle it."""
        if delivery.delivery_count >= self.settings.broker_max_deliveries:
            self.dead_letter(delivery, f"handler failed on {delivery.delivery_count} deliveries")
            return
        try:
            message = decode(delivery.body)
        except UndecodableMessage as exc:
            self.dead_letter(delivery, str(exc))
            return
        if isinstance(message, TaskMessage):
            self._task(delivery, message)
        else:
            self._event(delivery, message)

    def _task(self, delivery: Delivery, message: TaskMessage) -> None:
        s = self.settings
        task = self.store.claim_task_by_id(message.task_id, self.loop.app, s.lease_seconds)
        if task is None:
            try:
                self.store.get_task(message.task_id)
            except NotFound:
                self.dead_letter(delivery, f"unknown task id {message.task_id!r}", task_id=message.task_id)
                return
            self._ack(delivery)  # duplicate or stale: the database says it is not ours to run
            return
        self._ack(delivery)  # the claim has committed: from now on the lease covers the task
        emitted = self.loop.stages_completed
        self.loop.execute(task)
        if self.loop.stages_completed != emitted:
            self.publish_outbox()

    def _event(self, delivery: Delivery, message: EventMessage) -> None:
        s = self.settings
        event = self.store.claim_event_by_id(message.event_id, self.loop.app, s.event_visibility_seconds)
        if event is None:
            try:
                self.store.get_job(message.job_id)
            except NotFound:
                self.dead_letter(delivery, f"event names an unknown job {message.job_id!r}")
                return
            self._ack(delivery)  # handled already, or being handled: a duplicate
            return
        self.loop.handle_event(event)
        self._ack(delivery)
        self.publish_outbox()  # the tasks of the stage just planned, or the next event

    def publish_outbox(self) -> None:
        """Send what this process just committed; on failure the supervisors' passes send it later."""
        try:
            publish_outbox(self.store, self.publisher, self.settings.queue_names)
        except DispatchError:
            log.warning("could not publish new work now; the supervisor's outbox pass will", exc_info=True)

    def dead_letter(self, delivery: Delivery, reason: str, task_id: str | None = None) -> None:
        """To the dead-letter exchange (reason in a header) and the database's dead letters; then acknowledged."""
        self.publisher.dead_letter_message(delivery.queue, delivery.body, reason)
        body = delivery.body.decode("utf-8", errors="replace")[:2000]
        self.store.add_dead_letter(f"broker:{delivery.queue}", reason, {"queue": delivery.queue, "body": body},
                                   task_id=task_id)
        self._ack(delivery)
        log.error("dead-lettered a message from %s: %s", delivery.queue, reason)
