"""Fault points for chaos drills (tests/chaos, bench/chaos.py, partition tests). Off unless GEOMILL_FAULT_POINT is
set: each call is one environment lookup.

GEOMILL_FAULT_POINT names where the process SIGKILLs itself:
  after_claim            a worker, after claiming a task, before its handler starts
  before_complete        a worker, after the handler returned (its output written), before the completion commit
  between_stage_chunks   a planner, after committing a big stage's first chunk, before inserting the rest
  before_publish         storage, after an output was staged locally (a COG written and validated), before it is
                         published under its final name
GEOMILL_FAULT_ONCE is a file path: the first process to create it fires, every other call does nothing (without it,
every call fires). GEOMILL_FAULT_TASK_TYPE limits the worker points to one task type (e.g. demo.work).
GEOMILL_FAULT_HOLD_SECONDS turns the kill into a hold: the process sleeps that long at the point and then goes on (a
task stuck mid-run, e.g. while its host is cut off); a signal handler that raises (a lost lease's interrupt) ends
the hold early.
"""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger(__name__)


def fault_point(name: str, task_type: str | None = None) -> None:
    """SIGKILL this process (or hold it) here when GEOMILL_FAULT_POINT says so (a drill), else nothing."""
    if os.environ.get("GEOMILL_FAULT_POINT") != name:
        return
    wanted = os.environ.get("GEOMILL_FAULT_TASK_TYPE")
    if wanted and task_type is not None and wanted != task_type:
        return
    once = os.environ.get("GEOMILL_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    hold = os.environ.get("GEOMILL_FAULT_HOLD_SECONDS")
    if hold:
        log.warning("fault point %s: holding for %s s", name, hold)
        time.sleep(float(hold))
        log.warning("fault point %s: hold over", name)
        return
    os.kill(os.getpid(), signal.SIGKILL)
