"""Helpers of the console's browser tests: the `geomill serve` handle, logging in through the form, screenshots."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from procs import wait_for

CHROMIUM = os.environ.get("GEOMILL_CHROMIUM", "/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "geomill" / "examples" / "data"
SCREENSHOTS = os.environ.get("GEOMILL_CONSOLE_SCREENSHOTS")  # a folder: the tests save a PNG of each page there
RUNNING = ("queued", "processing")


def free_port() -> int:
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


def live(server: Server) -> bool:
    assert server.proc.poll() is None, f"geomill serve exited:\n{server.log.read_text()[-3000:]}"
    try:
        return httpx.get(f"{server.url}/livez", timeout=2).status_code == 200
    except httpx.TransportError:
        return False



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
