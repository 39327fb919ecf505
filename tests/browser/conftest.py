"""Browser fixtures: a real `geomill serve` (standalone: HTTP API, console and workers; SQLite) on a free port, keys
of each scope, and Debian's chromium driven by playwright (no browser download). A missing chromium or playwright
skips locally and fails under CI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from browser_helpers import CHROMIUM, EXAMPLES, Server, free_port, live
from procs import GEOMILL, cli, geomill_env, wait_for
from services import unavailable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("console")
    env = geomill_env(tmp / "data", workers=1, auth_disabled="false", app_mode="standalone", app_name="console-test",
                      poll_interval_seconds=0.05, api_key_cache_seconds=0.2, source_roots=f'["{EXAMPLES}"]',
                      large_raster_threshold_mb=1000)
    env.pop("GEOMILL_QUEUES", None)
    port = free_port()
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
        wait_for(lambda: live(srv), 60, "geomill serve to answer /livez", interval=0.2)
        yield srv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
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

