"""`POST /jobs/run`, `GET /jobs/status/{id}`, `GET /jobs/result/{id}` over real HTTP: a `geomill serve --mode
standalone` process (uvicorn on a free port, its worker pool solving in process) on SQLite and on PostgreSQL, keys
made with `geomill api-key create`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_helpers import assert_problem, free_port
from compute_helpers import SAMPLE_INPUTS, check_placements_geojson, footprint, polygon, sample_request
from geomill.contracts import inputs_hash
from procs import GEOMILL, cli, geomill_env, wait_for
from services import fresh_database


class Server:
    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.env = geomill_env(tmp / "data", database_url, workers=1, auth_disabled="false", queues="[]",
                               app_mode="standalone", app_name="h23-compute", lease_seconds=5)
        self.keys = {scope: self._key(scope, scopes) for scope, scopes in
                     [("read", "read"), ("submit", "read,submit")]}
        port = free_port()
        self.log = tmp / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*GEOMILL, "serve", "--mode", "standalone", "--port", str(port)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_for(self._live, 60, "geomill serve to answer /livez", interval=0.2)

    def _key(self, name: str, scopes: str) -> str:
        proc = cli(self.env, "api-key", "create", f"h23-{name}", "--scopes", scopes)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]

    def _live(self) -> bool:
        assert self.proc.poll() is None, f"geomill serve exited:\n{self.log.read_text()[-3000:]}"
        try:
            return self.client.get("/livez").status_code == 200
        except httpx.TransportError:
            return False

    def h(self, scope: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}

    def run(self, body: Any, scope: str = "submit") -> httpx.Response:
        return self.client.post("/jobs/run", json=body, headers=self.h(scope))

    def job_count(self) -> int:
        return len(self.client.get("/api/jobs", params={"limit": 500}, headers=self.h("read")).json()["items"])

    def wait_finished(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            r = self.client.get(f"/jobs/status/{job_id}", headers=self.h("read"))
            assert r.status_code == 200, r.text
            return r.json() if r.json()["status"] not in ("queued", "processing") else None
        return wait_for(finished, timeout, f"solve job {job_id}", interval=0.2)

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per database for the module (the tests count jobs before and after, not from zero)."""
    tmp_path = tmp_path_factory.mktemp(f"h23-{request.param}")
    if request.param == "sqlite":
        srv = Server(tmp_path, None)
        yield srv
        srv.close()
        return
    with fresh_database("h23_compute") as url:
        srv = Server(tmp_path, url)
        yield srv
        srv.close()


def test_run_status_result_end_to_end(server: Server) -> None:
    """The seed's sample request: 202, the inputs hash as id, the same request again 200; then completed, with the
    outputs, whose placements lie in the parcel, and an artifact whose bytes match its size and checksum."""
    body = sample_request()
    before = server.job_count()
    r = server.run(body)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert job_id == r.json()["inputs_hash"] == inputs_hash("sitefit", "1.0.0", body["inputs"])
    assert r.json()["status_url"] == f"/jobs/status/{job_id}" and r.json()["result_url"] == f"/jobs/result/{job_id}"
    reordered = {**body, "inputs": dict(reversed(list(body["inputs"].items())))}
    again = server.run(reordered)
    assert again.status_code == 200 and again.json()["job_id"] == job_id and again.json()["created"] is False

    status = server.wait_finished(job_id)
    assert status["status"] == "completed" and status["attempts"] == 1, status
    assert status["definition"] == "sitefit" and status["app_id"] == "h23-tests"
    r = server.client.get(f"/jobs/result/{job_id}", headers=server.h("read"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["engine"] == {"mode": "in_process", "name": "geomill"}
    parcel, house = polygon(SAMPLE_INPUTS["parcel"]), polygon(SAMPLE_INPUTS["house"])
    assert doc["outputs"]["placements"]
    assert all(parcel.covers(footprint(house, p)) for p in doc["outputs"]["placements"])
    artifacts = {a["name"]: a for a in doc["artifacts"]}
    assert {a["media_type"] for a in artifacts.values()} == {"application/json", "application/geo+json"}
    for artifact in artifacts.values():
        data = Path(artifact["href"]).read_bytes()  # a local silver zone: the href is the file's path
        assert artifact["size_bytes"] == len(data) and artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads(Path(artifacts["outputs.json"]["href"]).read_bytes()) == doc["outputs"]
    check_placements_geojson(Path(artifacts["placements.geojson"]["href"]), doc["outputs"])
    assert server.job_count() == before + 1


def test_invalid_inputs_422_per_field_and_nothing_stored(server: Server) -> None:
    before = server.job_count()
    bad = sample_request(setback=-1, seed="999")
    bad["inputs"]["house"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}
    body = assert_problem(server.run(bad), 422)
    assert {e["field"] for e in body["errors"]} == {"inputs.house.coordinates.0", "inputs.seed", "inputs.setback"}
    bow = sample_request(parcel={"type": "Polygon", "coordinates": [[[0, 0], [9, 9], [9, 0], [0, 9], [0, 0]]]})
    assert "Self-intersection" in assert_problem(server.run(bow), 422)["detail"]
    assert_problem(server.run({**sample_request(), "version": "9.0.0"}), 404)
    assert_problem(server.run({**sample_request(), "colour": "red"}), 422)
    assert server.job_count() == before


def test_keys_and_scopes_as_for_api_jobs(server: Server) -> None:
    assert_problem(server.client.post("/jobs/run", json=sample_request()), 401)
    assert_problem(server.run(sample_request(), scope="read"), 403)
    missing = "0" * 64
    assert_problem(server.client.get(f"/jobs/status/{missing}"), 401)
    assert_problem(server.client.get(f"/jobs/result/{missing}", headers=server.h("read")), 404)
    assert_problem(server.client.get("/jobs/status/not-a-hash", headers=server.h("read")), 422)


def test_api_jobs_submit_solve_is_the_same_job_and_other_jobs_are_not_solve_jobs(server: Server) -> None:
    """`/api/jobs/submit/solve` takes the same checks and gives the same id (the inputs hash); a job of another type
    is not shown on the compute paths."""
    body = sample_request(seed=4242)
    r = server.client.post("/api/jobs/submit/solve", json=body, headers=server.h("submit"))
    assert r.status_code == 202, r.text
    assert r.json()["job_id"] == inputs_hash("sitefit", "1.0.0", body["inputs"])
    assert server.run(body).status_code == 200
    bad = server.client.post("/api/jobs/submit/solve", json=sample_request(setback=-1), headers=server.h("submit"))
    assert assert_problem(bad, 422)["errors"] == [{"field": "inputs.setback",
                                                   "message": "-1 is less than the minimum of 0"}]
    hello = server.client.post("/api/jobs/submit/hello_world", json={"n": 1}, headers=server.h("submit"))
    assert hello.status_code in (200, 202), hello.text
    missing = assert_problem(server.client.get(f"/jobs/status/{hello.json()['job_id']}", headers=server.h("read")), 404)
    assert "not a solve job" in missing["detail"]
