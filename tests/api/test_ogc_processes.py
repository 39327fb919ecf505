"""OGC API - Processes - Part 1 over real HTTP: a `geomill serve --mode standalone` process (uvicorn and its worker
pool) on SQLite, driven by OWSLib (`owslib.ogcapi.processes.Processes`) where it covers the call and by httpx for
the rest; callbacks POSTed to a local HTTP receiver (the PostgreSQL run is in test_ogc_classes.py). Tests are named by the conformance
class they check (docs/ogc.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator
from owslib.ogcapi import REQUEST_HEADERS
from owslib.ogcapi.processes import Processes

from ogc_helpers import CONF, EXC, REL, Receiver, Server, assert_exception, assert_status_info, receiver
from procs import wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("ogc-sqlite"), None)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def owslib(server: Server) -> Iterator[Processes]:
    """OWSLib's client with the submit key. OWSLib keeps its headers in a module-wide dict: restored after."""
    saved = dict(REQUEST_HEADERS)
    try:
        yield Processes(f"{server.url}/ogc", headers=server.h("submit"))
    finally:
        REQUEST_HEADERS.clear()
        REQUEST_HEADERS.update(saved)


def test_core_landing_page_and_conformance_through_owslib(owslib: Processes) -> None:
    """A.2 landing page (/conf/core/landingpage-op, -success) and conformance (/conf/core/conformance-success)."""
    rels = {link["rel"] for link in owslib.links}
    assert {"service-desc", "service-doc", REL + "conformance", REL + "processes", REL + "job-list"} <= rels
    conforms = owslib.conformance()["conformsTo"]
    assert {CONF + c for c in ("core", "ogc-process-description", "json", "html", "oas30", "job-list", "dismiss",
                               "callback")} == set(conforms)


def test_oas30_service_desc_is_a_valid_openapi_30_document(owslib: Processes) -> None:
    """/conf/oas30: the landing page's service-desc is an OpenAPI 3.0 document covering every OGC operation."""
    doc = owslib.api()
    OpenAPIV30SpecValidator(doc).validate()
    assert doc["openapi"].startswith("3.0.")
    operations = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert {("get", "/ogc"), ("get", "/ogc/conformance"), ("get", "/ogc/api"), ("get", "/ogc/processes"),
            ("get", "/ogc/processes/{process_id}"), ("post", "/ogc/processes/{process_id}/execution"),
            ("get", "/ogc/jobs"), ("get", "/ogc/jobs/{job_id}"), ("get", "/ogc/jobs/{job_id}/results"),
            ("delete", "/ogc/jobs/{job_id}")} <= operations
    assert "X-API-Key" in str(doc["components"]["securitySchemes"])


def test_process_description_lists_every_job_type_through_owslib(owslib: Processes, server: Server) -> None:
    """/conf/ogc-process-description: each job type is a process; its inputs are its parameters."""
    job_types = {jt["name"]: jt for jt in server.client.get("/api/job-types", headers=server.h("read")).json()}
    processes = {p["id"]: p for p in owslib.processes()}
    assert processes.keys() == job_types.keys()
    for summary in processes.values():
        assert summary["version"] and {"async-execute", "sync-execute", "dismiss"} <= set(summary["jobControlOptions"])
    described = owslib.process("hello_world")
    assert described["inputs"]["n"]["schema"] == job_types["hello_world"]["parameters"]["properties"]["n"]
    assert described["outputs"]["result"]["schema"]["type"] == "object"


def test_core_execute_sync_runs_the_job_and_returns_its_results_through_owslib(owslib: Processes) -> None:
    """/conf/core/process-execute-sync-document: `Prefer: respond-sync` (OWSLib's default) waits for a short job."""
    results = owslib.execute("hello_world", inputs={"n": 3})
    value = results["result"]["value"]
    assert value["greetings"] == 3 and value["replies"] == 3
    assert value["sample"][0] == "Reply to 'Hello from greeting 0'"
    assert owslib.response_headers["Preference-Applied"] == "respond-sync"


def test_core_execute_async_then_status_and_results(owslib: Processes, server: Server) -> None:
    """/conf/core/process-execute-default-async: 201 and a Location; the job runs; the results are its outputs."""
    info = owslib.execute("fanout", inputs={"n": 3, "tag": "ogc-async"}, async_=True)
    assert_status_info(info)
    location = owslib.response_headers["Location"]
    assert location == f"{server.url}/ogc/jobs/{info['jobID']}" and info["status"] in ("accepted", "running")
    done = server.wait_status(info["jobID"], {"successful", "failed"})
    assert done["status"] == "successful" and done["progress"] == 100, done
    assert_status_info(done)
    assert any(link["rel"] == REL + "results" for link in done["links"])
    r = server.client.get(f"{location}/results", headers=server.h("read"))
    assert r.status_code == 200, r.text
    assert r.json() == {"result": {"value": {"stages": 3, "completed": 3, "failed": 0},
                                   "mediaType": "application/json"}}


def test_job_list_shows_the_jobs_run_here(server: Server, owslib: Processes) -> None:
    """/conf/job-list/job-list-op and -success: the executed jobs, as statusInfo, filtered by processID."""
    owslib.execute("hello_world", inputs={"n": 2})
    r = server.client.get("/ogc/jobs", params={"processID": "hello_world", "limit": 100}, headers=server.h("read"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    jobs = r.json()["jobs"]
    assert jobs and all(j["processID"] == "hello_world" for j in jobs)
    for info in jobs:
        assert_status_info(info)


def test_dismiss_cancels_a_running_job(server: Server) -> None:
    """/conf/dismiss: DELETE /jobs/{id} of a running job answers its statusInfo, dismissed; it stays dismissed and
    has no results. A read key may not dismiss."""
    r = server.client.post("/ogc/processes/fanout/execution", headers=server.h("submit"),
                           json={"inputs": {"n": 2, "sleep_s": 60, "tag": "ogc-dismiss"}})
    assert r.status_code == 201, r.text
    job_id = r.json()["jobID"]
    server.wait_status(job_id, {"running"})
    assert_exception(server.client.delete(f"/ogc/jobs/{job_id}", headers=server.h("read")), 403)
    r = server.client.delete(f"/ogc/jobs/{job_id}", headers=server.h("submit"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dismissed"
    assert server.client.get(f"/ogc/jobs/{job_id}", headers=server.h("read")).json()["status"] == "dismissed"
    assert_exception(server.client.get(f"/ogc/jobs/{job_id}/results", headers=server.h("read")), 404,
                     EXC + "result-not-ready")
    tasks = server.client.get(f"/api/jobs/{job_id}/tasks", headers=server.h("read")).json()["items"]
    wait_for(lambda: all(t["status"] == "cancelled" for t in server.client.get(
        f"/api/jobs/{job_id}/tasks", headers=server.h("read")).json()["items"]), 30, "the tasks to be cancelled")
    assert len(tasks) == 2


def _execute_with_subscriber(server: Server, got: Receiver, inputs: dict[str, Any]) -> str:
    subscriber = {"successUri": f"{got.url}/success", "failedUri": f"{got.url}/failed",
                  "inProgressUri": f"{got.url}/progress"}
    r = server.client.post("/ogc/processes/fanout/execution", headers=server.h("submit"),
                           json={"inputs": inputs, "subscriber": subscriber})
    assert r.status_code == 201, r.text
    return r.json()["jobID"]


def test_callback_success_and_progress_are_posted_to_the_subscriber(server: Server) -> None:
    """/conf/callback: inProgressUri gets the statusInfo while the job runs, successUri the results."""
    with receiver() as got:
        job_id = _execute_with_subscriber(server, got, {"n": 6, "sleep_s": 1.0, "tag": "ogc-callback"})
        wait_for(lambda: got.bodies("/success"), 60, "the success callback")
        results = server.client.get(f"/ogc/jobs/{job_id}/results", headers=server.h("read")).json()
        assert got.bodies("/success") == [results]
        progress = got.bodies("/progress")
        assert progress and all(p["jobID"] == job_id and p["status"] == "running" for p in progress), progress
        for info in progress:
            assert_status_info(info)
        assert got.bodies("/failed") == []


def test_callback_failure_is_posted_to_the_subscriber(server: Server) -> None:
    """/conf/callback: failedUri gets the statusInfo of a failed job, with its error as the message."""
    with receiver() as got:
        job_id = _execute_with_subscriber(server, got, {"n": 1, "invalid_keys": [0], "tag": "ogc-callback-fail"})
        failed = wait_for(lambda: got.bodies("/failed"), 60, "the failed callback")
        assert failed[0]["jobID"] == job_id and failed[0]["status"] == "failed", failed
        assert_status_info(failed[0])
        assert failed[0]["message"]
        assert got.bodies("/success") == []
        r = server.client.get(f"/ogc/jobs/{job_id}/results", headers=server.h("read"))
        assert_exception(r, 500, "https://geomill.dev/problems/job-failed")
