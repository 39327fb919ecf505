"""The AppServer is alive at once and ready only once its contracts are loaded: /health 200 while /ready and every
solve answer 503 (loading, or failed with the reason), then 200."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from compute_helpers import SAMPLE_INPUTS
from geomill.appserver import create_appserver
from geomill.contracts import Contracts, load_contracts
from geomill.domain import RegistryError


def wait_status(client: TestClient, path: str, status: int) -> dict:
    deadline = time.monotonic() + 10
    while (r := client.get(path)).status_code != status:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.02)
    return r.json()


def test_ready_only_once_the_contracts_are_loaded() -> None:
    release = threading.Event()

    def slow_load() -> Contracts:
        assert release.wait(10)
        return load_contracts()

    with TestClient(create_appserver(slow_load)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").status_code == 503 and client.get("/ready").json()["status"] == "loading"
        assert client.post("/gh/sitefit:1.0.0/solve", json={"inputs": SAMPLE_INPUTS}).status_code == 503
        release.set()
        assert wait_status(client, "/ready", 200)["contracts"] == ["sitefit:1.0.0"]
        assert client.post("/gh/sitefit:1.0.0/solve", json={"inputs": SAMPLE_INPUTS}).status_code == 200


def test_contracts_that_fail_to_load_keep_it_not_ready_with_the_reason() -> None:
    def broken() -> Contracts:
        raise RegistryError("contract /x/sitefit/1.0.0: cannot read manifest.json")

    with TestClient(create_appserver(broken)) as client:
        doc = wait_status(client, "/ready", 503)
        deadline = time.monotonic() + 10
        while doc["status"] == "loading":
            assert time.monotonic() < deadline
            doc = client.get("/ready").json()
        assert doc == {"status": "failed", "error": "contract /x/sitefit/1.0.0: cannot read manifest.json"}
        assert client.get("/health").status_code == 200
