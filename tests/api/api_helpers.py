"""Helpers shared by the API tests: the in-process `Api` handle, problem-document checks, paging and polling."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import samples
from geomill.config import Settings
from geomill.runtime import Runtime
from geomill.worker.loop import WorkerLoop

QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]
RGB = samples.raster("RGB.byte.tif")  # the package's copy: always present
PROBLEM = "application/problem+json"
TRACE_MARKERS = ("Traceback (most recent call last)", 'File "/', '.py", line')
RUNNING = ("queued", "processing")


def api_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Explicit values, so GEOMILL_* variables of the shell do not leak in."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "database_url": None, "app_name": "api-test", "workers": 1, "queues": QUEUES,
        "lease_seconds": 30.0, "poll_interval_seconds": 0.05, "stall_grace_seconds": 0.0,
        "event_visibility_seconds": 30.0, "plugins": [], "auth_disabled": False, "debug_endpoints": False,
        "source_roots": [], "api_key_cache_seconds": 0.2, "drill_jobs": True,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    """A TestClient on the app, its Runtime, one key per scope, and an in-process worker loop."""

    client: httpx.Client
    rt: Runtime
    data_dir: Path
    keys: dict[str, str] = field(default_factory=dict)
    _loop: WorkerLoop | None = None

    def h(self, scope: str = "admin", **extra: str) -> dict[str, str]:
        """Headers carrying the key of `scope` (none when auth is disabled)."""
        return {"X-API-Key": self.keys[scope], **extra} if scope in self.keys else dict(extra)

    def submit(self, job_type: str, params: Any, scope: str = "submit", **headers: str) -> httpx.Response:
        return self.client.post(f"/api/jobs/submit/{job_type}", json=params, headers=self.h(scope, **headers))

    def status(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/jobs/status/{job_id}", headers=self.h("read"))
        assert r.status_code == 200, r.text
        return r.json()

    def tasks(self, job_id: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/jobs/{job_id}/tasks", headers=self.h("read"))
        assert r.status_code == 200, r.text
        return r.json()["items"]

    @property
    def loop(self) -> WorkerLoop:
        if self._loop is None:
            self._loop = WorkerLoop(self.rt, QUEUES)
        return self._loop

    def work(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run the worker loop until the job is terminal (waiting out retry backoff); its status document."""
        deadline = time.monotonic() + timeout
        while (doc := self.status(job_id))["status"] in RUNNING:
            assert time.monotonic() < deadline, f"job still {doc['status']} after {timeout} s"
            if not self.loop.run_once():
                time.sleep(0.02)
        return doc

    def drain(self) -> None:
        """Run the loop until it finds nothing to do."""
        while self.loop.run_once():
            pass

    def drain_events(self) -> None:
        """Plan stages (orchestration events only) without running any task."""
        while self.loop.handle_one_event():
            pass

    def job_count(self) -> int:
        return len(self.rt.store.list_jobs(None, None, 100_000, None, None, None))


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 document with the expected status and no stack trace."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status and body["title"] and body["detail"], body
    assert not any(m in r.text for m in TRACE_MARKERS), r.text
    return body


def page_through(client: httpx.Client, params: dict[str, Any], headers: dict[str, str],
                 path: str = "/api/jobs", most: int = 100) -> list[list[dict]]:
    """Every page of a listing (GET /api/jobs unless `path`), following next_cursor."""
    pages: list[list[dict]] = []
    cursor = None
    while True:
        r = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200, r.text
        pages.append(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < most, "next_cursor never ends"


def poll(client: httpx.Client, job_id: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """Poll the job's status over HTTP until it is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/jobs/status/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] not in RUNNING:
            return r.json()
        assert time.monotonic() < deadline, f"job {job_id} still {r.json()['status']} after {timeout} s"
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
