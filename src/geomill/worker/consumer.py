"""A worker fed by a broker (RabbitMQ, or the in-memory stub in tests) instead of polling the database.

Each message names a task or an orchestration event. The handler claims that row with a guarded update and
acknowledges the message once the claim has committed, before the task runs: the task's lease and heartbeat cover
its life from then on, so RabbitMQ's consumer timeout never applies to task execution. A message that claims
nothing (a duplicate, or stale: the task ran or is running) is acknowledged and dropped. A message that cannot be
handled at all - any bytes that do not decode, naming an unknown task or job, or whose handler crashed on every
delivery - goes to the dead-letter queue with the reason, and is recorded in the database's dead letters; it
leaves its work queue even when recording it fails, so nothing is redelivered in a loop.
While tasks are short, several messages are handled at once (see BrokerConsumer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from geomill.dispatch.messages import EventMessage, TaskMessage, UndecodableMessage, dead_letter_payload, decode
from geomill.dispatch.outbox import publish_outbox
from geomill.domain import DispatchError, NotFound, StoreError
from geomill.engine.dispatch_ports import Broker, Delivery, Subscription
from geomill.worker.loop import SHORT_TASK

if TYPE_CHECKING:
    from geomill.worker.loop import WorkerLoop

log = logging.getLogger(__name__)


class BrokerConsumer:
    """Feeds a WorkerLoop from a broker: claim by id, acknowledge, run through the loop's `execute`.

    Batching, as the database-native loop does it: while tasks are short (< SHORT_TASK), the subscription's
    prefetch is raised to ``settings.prefetch`` and the messages already received are handled together - one claim
    statement for all their tasks, one commit for their successes. After a long task the prefetch drops back to 1,
    so a worker busy with long work does not sit on messages another worker could take.
    """

    def __init__(self, loop: WorkerLoop, broker: Broker) -> None:
        self.loop = loop
        self.broker = broker
        self.settings = loop.rt.settings
        self.store = loop.rt.store
        self.batch_limit = max(1, self.settings.prefetch)
        self.subscription: Subscription | None = None
        self._settled: set[int] = set()  # ids of the deliveries of the current batch acknowledged or rejected

    def run(self) -> None:
        """Consume until the loop's stop flag is set; the running task is always finished first."""
        try:
            while not self.loop.stop.is_set():
                self.poll(timeout=0.5)
        finally:
            self.close()

    def poll(self, timeout: float) -> bool:
        """Wait up to `timeout` for a delivery and handle it with the others already received; False if none."""
        subscription = self.open()
        first = subscription.next_delivery(timeout)
        if first is None:
            return False
        short = self.loop.last_task_seconds < SHORT_TASK
        subscription.set_prefetch(self.batch_limit if short else 1)
        more = subscription.drain(self.batch_limit - 1) if short else []
        self.handle_batch([first, *more])
        return True

    def open(self) -> Subscription:
        if self.subscription is None:
            self.subscription = self.broker.consume(self.loop.wait_queues, prefetch=1)
        return self.subscription

    def close(self) -> None:
        """Stop consuming: deliveries received but not settled go back to their queues."""
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    def handle(self, delivery: Delivery) -> None:
        """Decide what one message means and settle it."""
        self.handle_batch([delivery])

    def handle_batch(self, batch: list[Delivery]) -> None:
        self._settled.clear()
        if self.loop.stop.is_set():  # stopping: nothing new is claimed, the messages go to another worker
            self._give_back(batch)
            return
        tasks: list[tuple[Delivery, TaskMessage]] = []
        for delivery in batch:
            self._guarded([delivery], lambda d=delivery: self._sort(d, tasks))  # type: ignore[misc]
        if tasks:
            self._guarded([d for d, _ in tasks], lambda: self._tasks(tasks))

    def _guarded(self, deliveries: list[Delivery], handle: Callable[[], None]) -> None:
        try:
            handle()
        except (StoreError, DispatchError):
            log.exception("store or broker unavailable")
            self._give_back(deliveries)
            time.sleep(1.0)
        except Exception:  # a handler bug: the message comes back; after broker_max_deliveries it is dead-lettered
            log.exception("message handler crashed (delivery %d)", deliveries[0].delivery_count + 1)
            self._give_back(deliveries)

    def _give_back(self, deliveries: list[Delivery]) -> None:
        """Back to their queue, unless settled already (a task that failed after its claim: its lease expires and
        the janitor re-queues it)."""
        for delivery in deliveries:
            if id(delivery) not in self._settled:
                self.open().requeue(delivery)

    def _ack(self, delivery: Delivery) -> None:
        self._settled.add(id(delivery))
        self.open().ack(delivery)

    def _sort(self, delivery: Delivery, tasks: list[tuple[Delivery, TaskMessage]]) -> None:
        """Poison messages are dead-lettered and events handled now; task messages are collected for one claim."""
        if delivery.delivery_count >= self.settings.broker_max_deliveries:
            self.dead_letter(delivery, f"handler failed on {delivery.delivery_count} deliveries")
            return
        try:
            message = decode(delivery.body)
        except UndecodableMessage as exc:
            self.dead_letter(delivery, str(exc))
            return
        if isinstance(message, TaskMessage):
            tasks.append((delivery, message))
        else:
            self._event(delivery, message)

    def _tasks(self, messages: list[tuple[Delivery, TaskMessage]]) -> None:
        s = self.settings
        claimed = self.store.claim_tasks_by_ids([m.task_id for _, m in messages], self.loop.app, s.lease_seconds)
        mine = {t.task_id for t in claimed}
        for delivery, message in messages:
            if message.task_id in mine:
                self._ack(delivery)  # the claim has committed: from now on the lease covers the task
                mine.discard(message.task_id)  # a second message for the same task is a duplicate
                continue
            try:
                self.store.get_task(message.task_id)
            except NotFound:
                self.dead_letter(delivery, f"unknown task id {message.task_id!r}", task_id=message.task_id)
                continue
            self._ack(delivery)  # duplicate or stale: the database says it is not ours to run
        emitted = self.loop.stages_completed
        self.loop.run_claimed(claimed)
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
            publish_outbox(self.store, self.broker, self.settings.queue_names)
        except DispatchError:
            # the publisher logged the lost connection once; this happens for every event until it is back
            log.info("could not publish new work now; the supervisor's outbox pass will")

    def dead_letter(self, delivery: Delivery, reason: str, task_id: str | None = None) -> None:
        """To the dead-letter queue (reason attached) and the database's dead letters, then acknowledged. Whatever
        fails here, the message leaves its work queue: rejected, the queue's own dead-letter route takes it."""
        try:
            self.broker.dead_letter(delivery.queue, delivery.body, reason)
            published = True
        except DispatchError:
            log.warning("could not publish a dead letter; rejecting it to the dead-letter queue", exc_info=True)
            published = False
        try:
            self.store.add_dead_letter(f"broker:{delivery.queue}", reason,
                                       dead_letter_payload(delivery.queue, delivery.body), task_id=task_id)
        except Exception:  # the database refused or is away: the broker's dead-letter queue still holds it
            log.exception("could not record a dead letter from %s", delivery.queue)
        self._settled.add(id(delivery))
        if published:
            self.open().ack(delivery)
        else:
            self.open().reject(delivery)
        log.error("dead-lettered a message from %s: %s", delivery.queue, reason)
