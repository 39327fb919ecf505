"""The reconciler: reclaims expired leases, re-signals stalled stages, fails overdue jobs. Every repair is logged.
(With a broker, the supervisor also sends the outbox: dispatch/outbox.py.)"""

from __future__ import annotations

import logging
import time

from geomill.config import Settings
from geomill.domain import RegistryError
from geomill.engine.ports import ExpiredLease, LeaseRetry, Reconciler, RepairReport
from geomill.engine.registry import Registry

log = logging.getLogger(__name__)

STORE_RETRY_DELAY = 5.0  # the store's longest wait between retries of a call (store/postgres.py RETRY_MAX_DELAY)


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


def outage_grace(settings: Settings) -> float:
    """How long after the database came back leases stay unreclaimed: every worker's next beat and retried
    completion (retried with backoff all through the outage) gets through first."""
    return settings.heartbeat_seconds + STORE_RETRY_DELAY


_graced_outage = [float("-inf")]  # monotonic time of the store failure whose grace was last logged


def _log_grace_once(since: float, grace: float) -> None:
    """One line per outage: every pass of the grace period would repeat it."""
    failed_at = time.monotonic() - since
    if abs(failed_at - _graced_outage[0]) < 0.5:
        return
    _graced_outage[0] = failed_at
    log.info("janitor: the database was unreachable %.1f s ago; no leases reclaimed for %.1f s more", since,
             grace - since)


def reconcile(store: Reconciler, settings: Settings, registry: Registry) -> RepairReport:
    """One janitor pass. Right after the database was unreachable, leases that expired during the outage mostly
    belong to workers whose completions are still being retried: they are left alone for `outage_grace`."""
    # the other repairs first: a pass that started during an outage waits it out in them, and then knows of it
    resignalled = store.resignal_stalled_stages(settings.stall_grace_seconds)
    overdue = len(store.fail_overdue_jobs())
    since, grace = store.seconds_since_unavailable(), outage_grace(settings)
    if since < grace:
        _log_grace_once(since, grace)
    reclaimed = store.reclaim_expired_leases(lease_retry(registry)) if since >= grace else 0
    report = RepairReport(reclaimed_leases=reclaimed, resignalled_stages=resignalled, overdue_jobs=overdue)
    if report != RepairReport():
        log.warning("janitor repaired: %s", report)
        for name in ("reclaimed_leases", "resignalled_stages", "overdue_jobs"):
            store.bump_counter(name, getattr(report, name))
    return report

