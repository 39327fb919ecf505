"""Helpers for tests that drive geomill as real OS processes (the CLI, `geomill serve` roles)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GEOMILL = [sys.executable, "-m", "geomill.cli"]


def geomill_env(data_dir: Path, database_url: str | None = None, **settings: object) -> dict[str, str]:
    """Environment for a geomill process: its data folder, optional database URL and GEOMILL_* settings."""
    env = dict(os.environ, GEOMILL_DATA_DIR=str(data_dir), GEOMILL_DRILL_JOBS="true")  # tests submit fanout
    tests_dir = str(Path(__file__).resolve().parent)  # so GEOMILL_PLUGINS can name test plugins
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH", "")) if p)
    if database_url:
        env["GEOMILL_DATABASE_URL"] = database_url
    env.update({f"GEOMILL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GEOMILL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """A long-running geomill process (worker, serve) in its own process group."""
    return subprocess.Popen([*GEOMILL, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def start_worker(env: dict[str, str], processes: int) -> subprocess.Popen[bytes]:
    return start(env, "worker", "--processes", str(processes))


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM each process group, then SIGKILL whatever has not drained within 30 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def submit(env: dict[str, str], job_type: str = "fanout", **params: object) -> str:
    args = [a for k, v in params.items() for a in ("-p", f"{k}={json.dumps(v)}")]
    proc = cli(env, "submit", job_type, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def status(env: dict[str, str], job_id: str) -> dict[str, Any]:
    proc = cli(env, "status", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def tasks(env: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    proc = cli(env, "tasks", job_id, "--json", "--limit", "100000")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_terminal(env: dict[str, str], job_id: str, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = status(env, job_id)
        return doc if doc["status"] not in ("queued", "processing") else None

    return wait_for(done, timeout, f"job {job_id} to finish", interval=0.5)


def wait_processing(env: dict[str, str], job_id: str, timeout: float = 60) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        found = [t for t in tasks(env, job_id) if t["status"] == "processing"]
        return found[0] if found else None

    return wait_for(running, timeout, "a task to start", interval=0.1)


def sqlite_rows(data_dir: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    con = sqlite3.connect(data_dir / "geomill.db")
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()
