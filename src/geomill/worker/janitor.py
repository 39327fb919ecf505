"""The reconciler: reclaims expired leases, re-signals stalled stages, fails overdue jobs. Every repair is logged.
With a broker, the supervisor also sends the outbox (new work, and work sent long ago but never claimed)."""

from __future__ import annotations

import logging
import time
from typing import Any

from geomill.config import Settings
from geomill.domain import RegistryError
from geomill.engine.ports import ExpiredLease, LeaseRetry, Reconciler, RepairReport, Store
from geomill.engine.registry import Registry

log = logging.getLogger(__name__)


def lease_retry(registry: Registry) -> LeaseRetry:
    """When to retry an attempt that lost its lease: as its task type's RetryPolicy says for a failed attempt
    (a task type this process does not know: at once, while the task has attempts left)."""
    def retry_in(lease: ExpiredLease) -> float | None:
        try:
            policy = registry.task_type(lease.task_type).retry
        except RegistryError:
            return 0.0 if lease.attempt < lease.max_attempts else None
        return policy.next_delay(lease.attempt, lease.max_attempts)
    return retry_in


def reconcile(store: Reconciler, settings: Settings, registry: Registry) -> RepairReport:
    """One janitor pass."""
    report = RepairReport(
        reclaimed_leases=store.reclaim_expired_leases(lease_retry(registry)),
        resignalled_stages=store.resignal_stalled_stages(settings.stall_grace_seconds),
        overdue_jobs=len(store.fail_overdue_jobs()),
    )
    if report != RepairReport():
        log.warning("janitor repaired: %s", report)
        for name in ("reclaimed_leases", "resignalled_stages", "overdue_jobs"):
            store.bump_counter(name, getattr(report, name))
    return report


class Outbox:
    """A supervisor's publisher: new work every publish interval, and the republish pass with the janitor."""

    def __init__(self, store: Store, settings: Settings, publisher: Any) -> None:
        self.store = store
        self.settings = settings
        self.publisher = publisher
        self._next = 0.0

    @classmethod
    def open(cls, runtime: Any) -> Outbox | None:
        """None when no broker is configured (the database is the queue: nothing to send)."""
        s = runtime.settings
        if not s.broker_url:
            return None
        from geomill.dispatch.rabbitmq import RabbitPublisher

        return cls(runtime.store, s, RabbitPublisher(s.broker_url, s.queue_names))

    def send_due(self, republish_after_seconds: float | None = None) -> int:
        """Send unsent due work (at most every publish interval unless republishing); never raises."""
        from geomill.dispatch.outbox import publish_outbox

        now = time.monotonic()
        if republish_after_seconds is None and now < self._next:
            return 0
        self._next = now + self.settings.broker_publish_interval_seconds
        try:
            sent = publish_outbox(self.store, self.publisher, self.settings.queue_names,
                                  republish_after_seconds=republish_after_seconds)
        except Exception:  # broker or database away: the next pass sends it
            log.warning("outbox pass failed; retrying next interval", exc_info=True)
            return 0
        if sent and republish_after_seconds is not None:
            self.store.bump_counter("republished_messages", sent)
        return sent

    def close(self) -> None:
        self.publisher.close()
