"""The reconciler: reclaims expired leases, re-signals stalled stages, fails overdue jobs. Every repair is logged.
(With a broker, the supervisor also sends the outbox: dispatch/outbox.py.)"""

from __future__ import annotations

import logging

from geomill.config import Settings
from geomill.engine.ports import RepairReport, Store

log = logging.getLogger(__name__)


def reconcile(store: Store, settings: Settings) -> RepairReport:
    """One janitor pass."""
    report = RepairReport(
        reclaimed_leases=store.reclaim_expired_leases(),
        resignalled_stages=store.resignal_stalled_stages(settings.stall_grace_seconds),
        overdue_jobs=len(store.fail_overdue_jobs()),
    )
    if report != RepairReport():
        log.warning("janitor repaired: %s", report)
        for name in ("reclaimed_leases", "resignalled_stages", "overdue_jobs"):
            store.bump_counter(name, getattr(report, name))
    return report

