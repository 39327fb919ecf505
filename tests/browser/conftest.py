"""Browser fixtures: a real `geomill serve` (standalone: HTTP API, console and workers; SQLite) on a free port, keys
of each scope, and Debian's chromium driven by playwright (no browser download). A missing chromium or playwright
skips locally and fails under CI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from procs import GEOMILL, cli, geomill_env, wait_for
from services import unavailable

CHROMIUM = os.environ.get("GEOMILL_CHROMIUM", "/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "geomill" / "examples" / "data"
SCREENSHOTS = os.environ.get("GEOMILL_CONSOLE_SCREENSHOTS")  # a folder: the tests save a PNG of each page there
RUNNING = ("queued", "processing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`geomill serve` as a subprocess, its URL, one key per scope and an httpx client for setting the stage."""

    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, scope: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[scope]}, timeout=30)

    def submit(self, job_type: str, params: dict[str, Any]) -> str:
        with self.client("submit") as c:
            r = c.post(f"/api/jobs/submit/{job_type}", json=params)
        assert r.status_code in (200, 202), r.text
        return str(r.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        with self.client("read") as c:
            r = c.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_finished(self, job_id: str, timeout: float = 90) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            job = self.job(job_id)
            return job if job["status"] not in RUNNING else None
        return dict(wait_for(finished, timeout, f"job {job_id} to finish", interval=0.2))


def _live(server: Server) -> bool:
    assert server.proc.poll() is None, f"geomill serve exited:\n{server.log.read_text()[-3000:]}"
    try:
        return httpx.get(f"{server.url}/livez", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("console")
    env = geomill_env(tmp / "data", workers=1, auth_disabled="false", app_mode="standalone", app_name="console-test",
                      poll_interval_seconds=0.05, api_key_cache_seconds=0.2, source_roots=f'["{EXAMPLES}"]',
                      large_raster_threshold_mb=1000)
    env.pop("GEOMILL_QUEUES", None)
    port = _free_port()
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*GEOMILL, "serve", "--mode", "standalone", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(proc, f"http://127.0.0.1:{port}", env, log)
    try:
        for scope in ("read", "submit", "admin"):
            made = cli(env, "api-key", "create", f"console-{scope}", "--scopes", scope)
            assert made.returncode == 0, made.stderr
            srv.keys[scope] = made.stdout.strip().splitlines()[-1]
        wait_for(lambda: _live(srv), 60, "geomill serve to answer /livez", interval=0.2)
        yield srv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install 'playwright>=1.45,<2')")
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def login(browser: Any, server: Server, scope: str, next_page: str = "/ui/jobs") -> Any:
    """A fresh browser context logged in through the console's form with the key of `scope`; its page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations: the tests say yes
    page.on("pageerror", lambda e: print("page error:", e))  # shown with a failing test's output
    page.goto(f"{server.url}{next_page}")
    assert "/ui/login" in page.url
    page.fill("#key", server.keys[scope])
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}{next_page}*")
    return page


def shoot(page: Any, name: str) -> None:
    """Save the page as docs/img/console-<name>.png when asked (scripts/console_screenshots.py)."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"console-{name}.png"), full_page=True)
