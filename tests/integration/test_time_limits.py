"""Per-task time limits in real worker processes: the soft limit interrupts Python code, the supervisor kills
code that cannot be interrupted. Both count as transient failures: retried, then failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *params: str) -> dict:
    env = dict(os.environ, GEOMILL_DATA_DIR=str(tmp_path / "d"), GEOMILL_PLUGINS='["plugins.stubborn"]',
               GEOMILL_TIMEOUT_GRACE_SECONDS="1", GEOMILL_WORKERS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "geomill.cli", "run", "test_overrun", *params, "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_soft_time_limit_interrupts_and_retries(tmp_path: Path) -> None:
    doc = _run(tmp_path, "-p", "seconds=30")
    task = doc["failed_tasks"][0]
    assert task["attempt"] == 2  # retried once (max_attempts=2), then failed
    assert task["error"]["type"] == "TaskTimeout" and "time limit of 1 s" in task["error"]["message"]
    assert doc["seconds"] < 25  # the 30 s sleeps were cut short


@pytest.mark.slow
def test_hard_time_limit_kills_uninterruptible_task(tmp_path: Path) -> None:
    doc = _run(tmp_path, "-p", "seconds=30", "-p", "block_alarm=true")
    task = doc["failed_tasks"][0]
    assert task["attempt"] == 2
    assert task["error"]["type"] == "TaskTimeout" and "killed after" in task["error"]["message"]
    assert doc["seconds"] < 25
