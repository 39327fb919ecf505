"""Probes of roles without the HTTP API: `geomill serve --mode worker_*` with GEOMILL_PROBE_PORT answers /livez and
/readyz (what the Deployments and the image's HEALTHCHECK call), and deploy/docker/healthcheck.py finds the right
port for each role."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deploy_manifests import DEPLOY, load_module
from geomill.probes import ProbeServer
from procs import geomill_env, start, stop, wait_for

HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_worker_role_serves_probes_and_the_image_healthcheck_sees_it(tmp_path: Path) -> None:
    """Class: a worker role (no HTTP API) as a real `geomill serve` process, SQLite state."""
    port = _free_port()
    env = geomill_env(tmp_path / "data", app_mode="worker_raster", probe_port=port, workers=1)
    check = [sys.executable, str(HEALTHCHECK)]
    proc = start(env, "serve")
    try:
        wait_for(lambda: subprocess.run(check, env=env, capture_output=True).returncode == 0, 60, "the probe")
        assert _get(f"http://127.0.0.1:{port}/livez") == (200, '{"status": "ok"}')
        assert _get(f"http://127.0.0.1:{port}/readyz") == (200, '{"status": "ok"}')
        assert _get(f"http://127.0.0.1:{port}/api/health")[0] == 404  # probes only, not the API
    finally:
        stop(proc)
    assert proc.returncode == 0
    done = subprocess.run(check, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "/livez" in done.stderr


def test_readyz_is_503_while_the_database_does_not_answer() -> None:
    """Class: database down (a store whose every call fails); liveness is unaffected."""

    class DownStore:
        dialect = "postgres"

        def schema_version(self) -> int:
            raise ConnectionError("connection refused")

    rt: Any = SimpleNamespace(store=DownStore())
    server = ProbeServer(rt, "127.0.0.1", 0).start()
    try:
        assert _get(f"http://127.0.0.1:{server.port}/readyz") == (503, '{"status": "down"}')
        assert _get(f"http://127.0.0.1:{server.port}/livez") == (200, '{"status": "ok"}')
    finally:
        server.stop()


@pytest.mark.parametrize(("env", "url"), [
    ({}, "http://127.0.0.1:8000/livez"),  # standalone serves the API
    ({"GEOMILL_APP_MODE": "platform_only", "GEOMILL_PORT": "9000"}, "http://127.0.0.1:9000/livez"),
    ({"GEOMILL_APP_MODE": "platform_only", "GEOMILL_NO_HTTP": "true", "GEOMILL_PROBE_PORT": "8081"},
     "http://127.0.0.1:8081/livez"),
    ({"GEOMILL_APP_MODE": "worker_long", "GEOMILL_PROBE_PORT": "8081"}, "http://127.0.0.1:8081/livez"),
    ({"GEOMILL_APP_MODE": "worker_long"}, None),  # nothing to probe: the check fails rather than guesses
])
def test_the_healthcheck_probes_the_port_of_each_role(env: dict[str, str], url: str | None) -> None:
    assert load_module(HEALTHCHECK).probe_url(env) == url


def test_the_healthcheck_knows_the_api_bearing_modes_of_geomill() -> None:
    """The script imports nothing of geomill (it starts every 30 s), so its copy of the modes is checked here."""
    from geomill.roles import HTTP_MODES

    assert load_module(HEALTHCHECK).HTTP_MODES == set(HTTP_MODES)
