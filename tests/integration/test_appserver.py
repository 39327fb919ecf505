"""The AppServer role and the solve task over real HTTP: `geomill serve --mode appserver` as a process, stand-ins
that are not geomill (Node.js; a scripted http.server) in its place, and what the worker makes of each answer:
flaky (500 twice, then 200: attempt 3 completes), down (5 attempts, then failed and dead-lettered), a contract
violation or a 422 (failed at once). The worker runs in this process over SQLite or PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from compute_helpers import (
    SAMPLE_INPUTS,
    VALID_OUTPUTS,
    ScriptedAppServer,
    check_placements_geojson,
    closed_port_url,
    footprint,
    free_port,
    node_standin,
    polygon,
    sample_request,
)
from geomill.config import Settings
from geomill.contracts import load_contracts
from geomill.contracts.catalog import SHIPPED
from geomill.domain import InvalidInput, Job, JobStatus
from geomill.runtime import Runtime
from geomill.service import compute, listing
from geomill.worker.loop import WorkerLoop
from procs import GEOMILL, geomill_env, wait_for

QUEUES = ["jobs", "solve-tasks"]


@pytest.fixture(scope="module")
def appserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `geomill serve --mode appserver` on a free port, ready."""
    tmp = tmp_path_factory.mktemp("appserver")
    port = free_port()
    log = tmp / "appserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*GEOMILL, "serve", "--mode", "appserver", "--port", str(port)],
                                env=geomill_env(tmp / "data"), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, f"the AppServer exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            return httpx.get(url + "/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 60, "the AppServer to be ready", interval=0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def worker_runtime(tmp: Path, database_url: str | None, appserver_url: str | None) -> Runtime:
    return Runtime.open(Settings(
        data_dir=tmp / "data", database_url=database_url, app_name="h23-solve", workers=1, queues=QUEUES,
        lease_seconds=30.0, poll_interval_seconds=0.05, stall_grace_seconds=0.0, plugins=[],
        appserver_url=appserver_url, db_pool_size=2))


def run_to_end(rt: Runtime, request: dict[str, Any], timeout: float = 60.0) -> Job:
    """Submit through the service (as POST /jobs/run does) and work the job here until it is terminal."""
    job_id = compute.run(rt, request).job.job_id
    loop, deadline = WorkerLoop(rt, QUEUES), time.monotonic() + timeout
    while not (job := rt.store.get_job(job_id)).status.is_terminal:
        assert time.monotonic() < deadline, f"job still {job.status}"
        if not loop.run_once():
            time.sleep(0.05)
    return job


def the_task(rt: Runtime, job_id: str) -> dict[str, Any]:
    (task,) = listing.list_tasks(rt.store, job_id).items
    return task


@pytest.fixture
def make_rt(tmp_path: Path) -> Iterator[Any]:
    opened: list[Runtime] = []

    def factory(appserver_url: str | None, database_url: str | None = None) -> Runtime:
        opened.append(worker_runtime(tmp_path / f"w{len(opened)}", database_url, appserver_url))
        return opened[-1]

    yield factory
    for rt in opened:
        rt.close()


def test_appserver_protocol_health_ready_contracts_and_solve(appserver: str) -> None:
    """What any AppServer must answer: health, readiness, its contracts, a solve, and refusals."""
    client = httpx.Client(base_url=appserver, timeout=30)
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready", "contracts": ["sitefit:1.0.0"]}
    (listed,) = client.get("/contracts").json()
    assert listed["definition"] == "sitefit" and listed["version"] == "1.0.0"
    assert listed["sha256"] == load_contracts().get("sitefit", "1.0.0").digest
    shown = client.get("/contracts/sitefit/1.0.0").json()
    assert shown["inputs_schema"]["required"] == ["crs", "parcel", "house"]

    r = client.post("/gh/sitefit:1.0.0/solve", json={"inputs": SAMPLE_INPUTS})
    assert r.status_code == 200, r.text
    out = r.json()
    load_contracts().get("sitefit", "1.0.0").check_outputs(out)
    assert out["metadata"]["engine"] == {"mode": "appserver", "name": "geomill-appserver"}
    parcel, house = polygon(SAMPLE_INPUTS["parcel"]), polygon(SAMPLE_INPUTS["house"])
    assert out["placements"] and all(parcel.covers(footprint(house, p)) for p in out["placements"])

    bad = client.post("/gh/sitefit:1.0.0/solve", json={"inputs": {**SAMPLE_INPUTS, "setback": -2}})
    assert bad.status_code == 422 and bad.json()["errors"] == [
        {"field": "inputs.setback", "message": "-2 is less than the minimum of 0"}]
    bow = {**SAMPLE_INPUTS, "house": {"type": "Polygon", "coordinates": [[[0, 0], [4, 4], [4, 0], [0, 4], [0, 0]]]}}
    r = client.post("/gh/sitefit:1.0.0/solve", json={"inputs": bow})
    assert r.status_code == 422 and "Self-intersection" in r.json()["detail"]
    r = client.post("/gh/sitefit:2.0.0/solve", json={"inputs": SAMPLE_INPUTS})
    assert r.status_code == 404 and r.json()["known"] == ["sitefit:1.0.0"]
    assert client.post("/gh/sitefit/solve", json={"inputs": SAMPLE_INPUTS}).status_code == 404


def test_solve_job_on_the_geomill_appserver_records_result_and_artifact(appserver: str, db_url: str | None,
                                                                        make_rt: Any) -> None:
    """GEOMILL_APPSERVER_URL set: the worker calls the AppServer; result and artifact rows on SQLite/PostgreSQL."""
    rt = make_rt(appserver, db_url)
    job = run_to_end(rt, sample_request())
    assert job.status is JobStatus.COMPLETED, job.error
    doc = compute.run_result(rt, job.job_id)
    assert doc["engine"] == {"mode": "appserver", "name": "geomill-appserver"}
    assert doc["outputs"]["placements"] and doc["contract_sha256"] == load_contracts().get("sitefit", "1.0.0").digest
    artifacts = {a["name"]: a for a in doc["artifacts"]}
    assert sorted(artifacts) == ["outputs.json", "placements.geojson"]
    for artifact in artifacts.values():
        data = rt.storage.read_bytes(artifact["uri"])
        assert artifact["size_bytes"] == len(data) and artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert artifacts["outputs.json"]["media_type"] == "application/json"
    assert json.loads(rt.storage.read_bytes(artifacts["outputs.json"]["uri"])) == doc["outputs"]
    assert artifacts["placements.geojson"]["media_type"] == "application/geo+json"
    check_placements_geojson(rt.storage.local_path(artifacts["placements.geojson"]["uri"]), doc["outputs"])
    assert the_task(rt, job.job_id)["attempt"] == 1


def test_a_node_js_standin_takes_the_appservers_place(make_rt: Any) -> None:
    """Any server speaking the protocol will do: a Node.js one (no geomill) answers, the worker accepts it."""
    with node_standin(free_port()) as url:
        rt = make_rt(url)
        job = run_to_end(rt, sample_request())
    assert job.status is JobStatus.COMPLETED, job.error
    doc = compute.run_result(rt, job.job_id)
    assert doc["engine"] == {"mode": "appserver", "name": "node-standin"}
    (placement,) = doc["outputs"]["placements"]
    placed = footprint(polygon(SAMPLE_INPUTS["house"]), placement)
    assert polygon(SAMPLE_INPUTS["parcel"]).covers(placed)


def test_flaky_appserver_500_twice_then_200_completes_on_attempt_3(make_rt: Any) -> None:
    with ScriptedAppServer([(500, {"detail": "busy"}), (500, {"detail": "busy"}), (200, VALID_OUTPUTS)]) as server:
        rt = make_rt(server.url)
        job = run_to_end(rt, sample_request())
    assert job.status is JobStatus.COMPLETED, job.error
    assert server.calls == 3 and the_task(rt, job.job_id)["attempt"] == 3
    assert compute.run_result(rt, job.job_id)["outputs"] == VALID_OUTPUTS
    assert rt.store.list_dead_letters() == []


def test_appserver_down_fails_after_5_attempts_and_is_dead_lettered(make_rt: Any) -> None:
    """Nobody listens: connection refused on each of the 5 attempts (backoff 0.5, 1, 2, 4 s), then failed."""
    url = closed_port_url()
    rt = make_rt(url)
    job = run_to_end(rt, sample_request())
    assert job.status is JobStatus.FAILED
    task = the_task(rt, job.job_id)
    assert task["attempt"] == 5 and task["status"] == "failed"
    assert "AppServer" in task["error"]["message"] and "unreachable" in task["error"]["message"]
    assert url in task["error"]["message"] and task["error"]["cause"] == "transient"
    (letter,) = rt.store.list_dead_letters()
    assert letter["task_id"] == task["task_id"] and "no attempts left" in letter["reason"]
    result = compute.run_result(rt, job.job_id)  # what GET /jobs/result answers: the error, no outputs
    assert result["status"] == "failed" and result["outputs"] is None and result["artifacts"] == []
    assert "unreachable" in json.dumps(result["error"])


@pytest.mark.parametrize("answer, kind, cause", [
    ((200, {**VALID_OUTPUTS, "metadata": {"definition": "sitefit"}}), "ContractViolation", "permanent"),
    ((200, {**VALID_OUTPUTS, "placements": [{"id": "x", "score": 7}]}), "ContractViolation", "permanent"),
    ((422, {"detail": "house: invalid polygon"}), "InvalidInput", "invalid_input"),
    ((404, {"detail": "no such contract here"}), "PermanentError", "permanent"),
])
def test_contract_violation_or_4xx_fails_at_once(make_rt: Any, answer: tuple[int, Any], kind: str,
                                                 cause: str) -> None:
    """Never retried: one call, one attempt, the reason in the error, no dead letter."""
    with ScriptedAppServer([answer]) as server:
        rt = make_rt(server.url)
        job = run_to_end(rt, sample_request())
    assert job.status is JobStatus.FAILED and server.calls == 1
    task = the_task(rt, job.job_id)
    assert task["attempt"] == 1 and task["error"]["type"] == kind and task["error"]["cause"] == cause
    if kind == "ContractViolation":
        assert "broke its contract" in task["error"]["message"] and "outputs." in task["error"]["message"]
    assert rt.store.list_dead_letters() == []


def test_in_process_solver_that_breaks_its_contract_fails_at_once(tmp_path: Path) -> None:
    """No AppServer: a contract from GEOMILL_CONTRACTS_DIR whose solver answers outside its outputs schema."""
    folder = tmp_path / "contracts" / "echo" / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"definition": "echo", "version": "1.0.0", "description": "t",
                                                      "solver": "plugins.contract_solvers:broken"}))
    (folder / "inputs.schema.json").write_text(json.dumps({"type": "object", "required": ["text"]}))
    (folder / "outputs.schema.json").write_text(json.dumps({"type": "object",
                                                            "properties": {"echo": {"type": "string"}}}))
    settings = Settings(data_dir=tmp_path / "data", app_name="h23-local", workers=1, queues=QUEUES,
                        poll_interval_seconds=0.05, stall_grace_seconds=0.0, plugins=[],
                        contracts_dir=tmp_path / "contracts")
    rt = Runtime.open(settings)
    try:
        job = run_to_end(rt, {"definition": "echo", "version": "1.0.0", "inputs": {"text": "hi"}})
        assert job.status is JobStatus.FAILED
        task = the_task(rt, job.job_id)
        assert task["attempt"] == 1 and task["error"]["type"] == "ContractViolation"
        assert "outputs.echo: 42 is not of type 'string'" in task["error"]["message"]
        assert rt.store.compute_result(job.job_id) is None  # nothing recorded for a violation
    finally:
        rt.close()


@pytest.mark.parametrize("mode", ["appserver", "standalone"])
def test_a_broken_contract_stops_geomill_serve_at_start(tmp_path: Path, mode: str) -> None:
    """Checked at start-up, not at 3 a.m.: exit 2 naming the file, before any port is opened."""
    folder = tmp_path / "contracts" / "sitefit" / "2.0.0"
    shutil.copytree(SHIPPED / "sitefit" / "1.0.0", folder)
    (folder / "manifest.json").write_text("{not json")
    env = geomill_env(tmp_path / "data", contracts_dir=tmp_path / "contracts")
    proc = subprocess.run([*GEOMILL, "serve", "--mode", mode, "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120)
    said = " ".join(proc.stderr.split())  # the CLI wraps long lines
    assert proc.returncode == 2, said
    assert "2.0.0/manifest.json: not JSON" in said.replace("/ ", "/").replace(" /", "/")


def test_health_shows_the_contracts_and_whether_the_appserver_is_ready(appserver: str, make_rt: Any) -> None:
    """Not a required component: an unreachable AppServer degrades health, it does not take the API down."""
    from geomill.roles import resolve_role
    from geomill.service.health import health_document

    role = resolve_role("standalone")
    doc, down = health_document(make_rt(appserver), role, has_http=False)
    compute_doc = doc["components"]["compute"]
    assert compute_doc["status"] == "ok" and compute_doc["appserver"] == "ready" and not down
    assert compute_doc["contracts"] == ["sitefit:1.0.0"] and compute_doc["solver"] == "appserver"
    doc, down = health_document(make_rt(closed_port_url()), role, has_http=False)
    assert doc["components"]["compute"]["status"] == "degraded" and not down
    assert "unreachable" in doc["components"]["compute"]["appserver"]
    assert health_document(make_rt(None), role)[0]["components"]["compute"]["solver"] == "in_process"


def test_a_version_changed_under_the_same_number_is_refused(tmp_path: Path) -> None:
    """Versions are immutable: the job pins the contract's sha256 at submit; a worker whose copy of that version
    differs fails the task at once instead of solving against other rules. A client may pin it too."""
    def contracts(root: Path, max_length: int) -> Path:
        folder = root / "echo" / "1.0.0"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"definition": "echo", "version": "1.0.0",
                                                          "description": "t", "solver": "plugins.contract_solvers:echo"}))
        (folder / "inputs.schema.json").write_text(json.dumps({
            "type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": max_length}}}))
        (folder / "outputs.schema.json").write_text(json.dumps({"type": "object"}))
        return root

    def runtime(contracts_dir: Path) -> Runtime:
        return Runtime.open(Settings(data_dir=tmp_path / "data", app_name="h23-pin", workers=1, queues=QUEUES,
                                     poll_interval_seconds=0.05, stall_grace_seconds=0.0, plugins=[],
                                     contracts_dir=contracts_dir))

    api, worker = runtime(contracts(tmp_path / "a", 10)), runtime(contracts(tmp_path / "b", 20))
    try:
        request = {"definition": "echo", "version": "1.0.0", "inputs": {"text": "hi"}}
        pinned = api.contracts.get("echo", "1.0.0").digest
        with pytest.raises(InvalidInput, match="contract_sha256"):
            compute.run(api, {**request, "contract_sha256": "0" * 64})
        job_id = compute.run(api, {**request, "contract_sha256": pinned}).job.job_id
        loop, deadline = WorkerLoop(worker, QUEUES), time.monotonic() + 30
        while not (job := worker.store.get_job(job_id)).status.is_terminal:
            assert time.monotonic() < deadline
            if not loop.run_once():
                time.sleep(0.05)
        task = the_task(worker, job_id)
        assert job.status is JobStatus.FAILED and task["attempt"] == 1
        assert task["error"]["type"] == "PermanentError" and "must not change" in task["error"]["message"]
    finally:
        api.close()
        worker.close()


@pytest.fixture(params=["geomill", "node"])
def any_appserver(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each AppServer implementation in turn: geomill's, and the Node.js stand-in."""
    if request.param == "geomill":
        yield request.getfixturevalue("appserver")
        return
    with node_standin(free_port()) as url:
        yield url


def test_every_appserver_speaks_the_protocol(any_appserver: str) -> None:
    """The shared part of the protocol: health, readiness, the contract list, a conforming solve, 404 for a contract
    it does not serve."""
    client = httpx.Client(base_url=any_appserver, timeout=30)
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    assert {(c["definition"], c["version"]) for c in client.get("/contracts").json()} == {("sitefit", "1.0.0")}
    r = client.post("/gh/sitefit:1.0.0/solve", json={"inputs": SAMPLE_INPUTS})
    assert r.status_code == 200
    load_contracts().get("sitefit", "1.0.0").check_outputs(r.json())
    assert client.post("/gh/nothing:1.0.0/solve", json={"inputs": {}}).status_code == 404
