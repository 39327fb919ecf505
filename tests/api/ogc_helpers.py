"""Helpers of the OGC API - Processes tests: a `geomill serve` process on a free port, a local HTTP receiver for
callbacks, and the assertion sets per conformance class (after ets-ogcapi-processes10's abstract tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from api_helpers import free_port
from geomill.config import Settings
from geomill.service.keys import create_key
from geomill.store import open_store
from procs import GEOMILL, geomill_env, wait_for

OGC_STATUSES = {"accepted", "running", "successful", "failed", "dismissed"}
EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"


class Server:
    """`geomill serve --mode standalone` (uvicorn and 2 worker processes) with a read and a submit key."""

    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # links absolute under the public URL (OWSLib follows the landing page's service-desc link as it is)
        self.env = geomill_env(tmp / "data", database_url, workers=2, auth_disabled="false", queues="[]",
                               app_mode="standalone", app_name="ogc-test", lease_seconds=3, public_url=self.url,
                               poll_interval_seconds=0.05, cancel_grace_seconds=1, ogc_sync_seconds=60)
        self.keys = self._make_keys(tmp / "data", database_url)
        self.log = tmp / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*GEOMILL, "serve", "--mode", "standalone", "--port", str(self.port)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        wait_for(self._live, 60, "geomill serve to answer /livez", interval=0.2)

    @staticmethod
    def _make_keys(data_dir: Path, database_url: str | None) -> dict[str, str]:
        """A read and a submit key, written to the server's database in this process (two CLI runs cost seconds)."""
        settings = Settings(data_dir=data_dir, database_url=database_url)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.resolved_database_url, settings)
        try:
            store.migrate()
            return {scope: create_key(store, f"ogc-{scope}", scopes)[1]
                    for scope, scopes in [("read", ["read"]), ("submit", ["read", "submit"])]}
        finally:
            store.close()

    def _live(self) -> bool:
        assert self.proc.poll() is None, f"geomill serve exited:\n{self.log.read_text()[-3000:]}"
        try:
            return self.client.get("/livez").status_code == 200
        except httpx.TransportError:
            return False

    def h(self, scope: str, **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[scope], **extra}

    def wait_status(self, job_id: str, wanted: set[str], timeout: float = 60) -> dict[str, Any]:
        """Poll /ogc/jobs/{id} until its status is one of `wanted`."""
        def reached() -> dict[str, Any] | None:
            r = self.client.get(f"/ogc/jobs/{job_id}", headers=self.h("read"))
            assert r.status_code == 200, r.text
            return r.json() if r.json()["status"] in wanted else None
        return wait_for(reached, timeout, f"job {job_id} to be {wanted}", interval=0.1)

    def close(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Receiver:
    """A local HTTP server that records every POST (path, JSON body) and answers 204, or 500 to the first
    `failures` POSTs (recorded as well)."""

    url: str
    failures: int = 0
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body in self.posts if p == path]


@contextmanager
def receiver(failures: int = 0) -> Iterator[Receiver]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    got = Receiver(f"http://127.0.0.1:{httpd.server_address[1]}", failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            with got.lock:
                got.posts.append((self.path, body))
                fail = len(got.posts) <= got.failures
            self.send_response(500 if fail else 204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd.RequestHandlerClass = Handler
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        httpd.shutdown()
        httpd.server_close()


def assert_exception(r: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    """An OGC exception (RFC 7807 fields): the status, a type URI, a title."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("http"), body
    if type_:
        assert body["type"] == type_, body
    return body


def assert_status_info(info: dict[str, Any]) -> None:
    """statusInfo.yaml: jobID, status from the OGC list, type process, progress 0..100, RFC 3339 times, links."""
    assert info["type"] == "process" and info["jobID"] and info["processID"], info
    assert info["status"] in OGC_STATUSES, info
    assert 0 <= info["progress"] <= 100 and isinstance(info["progress"], int), info
    for key in ("created", "started", "finished", "updated"):
        if key in info:
            assert "T" in info[key] and info[key][-6] in "+-", info[key]
    assert any(link["rel"] == "self" and link["href"].endswith(f"/jobs/{info['jobID']}")
               for link in info["links"]), info["links"]
    for link in info["links"]:
        assert {"href", "rel", "type"} <= link.keys(), link
