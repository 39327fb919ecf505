"""The janitor's log during a database outage (issue 25): one line per outage, not one per pass."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from geomill.worker.janitor import reconcile


def test_the_janitors_outage_grace_is_logged_once_per_outage_not_every_pass(
    make_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_runtime()
    rt.store._unavailable_at = time.monotonic()  # a call just found the database unreachable
    with caplog.at_level(logging.INFO, logger="geomill.worker.janitor"):
        for _ in range(3):
            reconcile(rt.store, rt.settings, rt.registry)
        rt.store._unavailable_at = time.monotonic() + 1.0  # a second outage
        reconcile(rt.store, rt.settings, rt.registry)
    graces = [r for r in caplog.records if "no leases reclaimed" in r.getMessage()]
    assert len(graces) == 2
