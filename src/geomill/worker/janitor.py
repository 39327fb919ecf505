"""The reconciler: reclaims expired leases, re-signals stalled stages, fails overdue jobs. Every repair is logged.
(With a broker, the supervisor also sends the outbox: dispatch/outbox.py.)"""

from __future__ import annotations

import logging

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

