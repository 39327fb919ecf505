"""OGC API - Processes - Part 1, one assertion set per conformance class (after ets-ogcapi-processes10's abstract
tests), on the app in process (TestClient, SQLite, the worker loop run by the test): keys and scopes, exceptions,
JSON and HTML for every resource, job list paging and filters, dismiss, callback checks, retries and restarts; and
one run on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from api_helpers import Api, api_settings
from geomill.api import create_app
from geomill.runtime import Runtime
from geomill.worker.loop import WorkerLoop
from ogc_helpers import EXC, REL, assert_exception, assert_status_info, receiver
from procs import wait_for

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def execute(api: Api, process: str, body: dict[str, Any], scope: str = "submit", **headers: str) -> Any:
    return api.client.post(f"/ogc/processes/{process}/execution", json=body, headers=api.h(scope, **headers))


def test_core_keys_and_scopes(api: Api) -> None:
    """Landing page, conformance and the API definition need no key; reads need a read key; execute and dismiss
    a submit key."""
    for path in ("/ogc", "/ogc/conformance", "/ogc/api"):
        assert api.client.get(path).status_code == 200, path
    assert api.client.get("/ogc/processes").status_code == 401
    assert api.client.get("/ogc/jobs", headers={"X-API-Key": "gm_nope"}).status_code == 401
    assert api.client.get("/ogc/processes/hello_world", headers=api.h("read")).status_code == 200
    assert_exception(execute(api, "hello_world", {"inputs": {"n": 1}}, scope="read"), 403)
    r = execute(api, "hello_world", {"inputs": {"n": 1}})
    assert r.status_code == 201, r.text
    job_id = r.json()["jobID"]
    assert api.client.get(f"/ogc/jobs/{job_id}", headers=api.h("read")).status_code == 200
    assert api.client.get("/ogc/jobs", headers=api.h("read")).status_code == 200
    assert_exception(api.client.delete(f"/ogc/jobs/{job_id}", headers=api.h("read")), 403)
    assert api.client.delete(f"/ogc/jobs/{job_id}", headers=api.h("submit")).json()["status"] == "dismissed"


def test_core_exceptions_carry_the_ogc_types(api: Api) -> None:
    """no-such-process, no-such-job, result-not-ready; invalid inputs are 400 and store nothing."""
    read = api.h("read")
    assert_exception(api.client.get("/ogc/processes/nope", headers=read), 404, EXC + "no-such-process")
    assert_exception(execute(api, "nope", {"inputs": {}}), 404, EXC + "no-such-process")
    for job_id in ("0" * 64, "not-a-job"):
        assert_exception(api.client.get(f"/ogc/jobs/{job_id}", headers=read), 404, EXC + "no-such-job")
        assert_exception(api.client.get(f"/ogc/jobs/{job_id}/results", headers=read), 404, EXC + "no-such-job")
        assert_exception(api.client.delete(f"/ogc/jobs/{job_id}", headers=api.h("submit")), 404,
                         EXC + "no-such-job")
    job_id = execute(api, "hello_world", {"inputs": {"n": 2}}).json()["jobID"]
    assert_exception(api.client.get(f"/ogc/jobs/{job_id}/results", headers=read), 404, EXC + "result-not-ready")
    before = api.job_count()
    for body, field in [({"inputs": {"n": "x"}}, "n"), ({"inputs": {"m": 1}}, "m"), ({"inputs": [1]}, "inputs"),
                        ({"inputs": {}, "mode": "x"}, "mode"), ({"inputs": {}, "response": "x"}, "response"),
                        ({"inputs": {"n": 1}, "subscriber": {"successUri": "ftp://x/y"}}, "subscriber"),
                        ({"inputs": {"n": 1}, "subscriber": {}}, "subscriber")]:
        problem = assert_exception(execute(api, "hello_world", body), 400)
        assert field in problem["detail"], (body, problem)
    assert api.job_count() == before


def test_core_sync_answers_async_when_the_job_is_not_short(make_api: Callable[..., Api]) -> None:
    """Prefer: respond-sync waits GEOMILL_OGC_SYNC_SECONDS at most, then answers 201 as async and says so; a job
    that is done answers at once with its results (raw: the value alone)."""
    api = make_api(ogc_sync_seconds=0.3)
    r = execute(api, "hello_world", {"inputs": {"n": 2}}, Prefer="respond-sync")
    assert r.status_code == 201 and r.headers["Preference-Applied"] == "respond-async", r.text
    assert r.headers["Location"] == f"/ogc/jobs/{r.json()['jobID']}" and r.json()["status"] == "accepted"
    api.work(r.json()["jobID"])
    done = execute(api, "hello_world", {"inputs": {"n": 2}}, Prefer="respond-sync")
    assert done.status_code == 200 and done.headers["Preference-Applied"] == "respond-sync", done.text
    assert done.json()["result"]["value"]["greetings"] == 2
    raw = execute(api, "hello_world", {"inputs": {"n": 2}, "response": "raw"}, Prefer="respond-sync")
    assert raw.json() == done.json()["result"]["value"]
    plain = execute(api, "hello_world", {"inputs": {"n": 2}})  # no Prefer: async, no Preference-Applied
    assert plain.status_code == 201 and "Preference-Applied" not in plain.headers


def test_ogc_process_description_inputs_follow_the_parameter_schemas(api: Api) -> None:
    """Every input's schema is a valid JSON Schema (its $refs resolve), minOccurs says required, defaults
    validate; one output."""
    job_types = {jt["name"]: jt["parameters"] for jt in api.client.get("/api/job-types", headers=api.h("read")).json()}
    for name, parameters in job_types.items():
        doc = api.client.get(f"/ogc/processes/{name}", headers=api.h("read")).json()
        assert doc["id"] == name and doc["inputs"].keys() == parameters.get("properties", {}).keys(), name
        for input_id, spec in doc["inputs"].items():
            jsonschema.Draft202012Validator.check_schema(spec["schema"])
            assert spec["minOccurs"] == (1 if input_id in parameters.get("required", []) else 0)
            assert spec["maxOccurs"] == 1
            if "default" in spec["schema"] and spec["schema"]["default"] is not None:
                jsonschema.validate(spec["schema"]["default"], spec["schema"])
        assert list(doc["outputs"]) == ["result"]
        assert any(link["rel"] == REL + "execute" for link in doc["links"])


def _resources(api: Api) -> dict[str, str]:
    """Each GET resource (path -> a text its HTML page must show) of a finished job."""
    job_id = execute(api, "hello_world", {"inputs": {"n": 1}}).json()["jobID"]
    api.work(job_id)
    return {"/ogc": "geomill OGC API - Processes", "/ogc/conformance": "conf/job-list",
            "/ogc/processes": "hello_world", "/ogc/processes/hello_world": "number of greetings",
            "/ogc/jobs": job_id[:12], f"/ogc/jobs/{job_id}": "successful",
            f"/ogc/jobs/{job_id}/results": "Hello from greeting 0"}


def test_json_every_resource_answers_json(api: Api) -> None:
    for path in _resources(api):
        for headers in ({}, {"Accept": "application/json"}):
            r = api.client.get(path, headers=api.h("read", **headers))
            assert r.status_code == 200 and r.headers["content-type"] == "application/json", (path, r.text)
            assert isinstance(r.json(), dict)
        assert api.client.get(path, params={"f": "json"}, headers=api.h("read", Accept=BROWSER)).headers[
            "content-type"] == "application/json"
    r = api.client.get("/ogc/api", headers={"Accept": "application/json"})
    assert r.headers["content-type"] == "application/vnd.oai.openapi+json;version=3.0"


def test_html_every_resource_renders_html(api: Api) -> None:
    """By ?f=html and by a browser's Accept; an unknown f is a 400."""
    for path, shown in _resources(api).items():
        for params, headers in (({"f": "html"}, {}), ({}, {"Accept": BROWSER})):
            r = api.client.get(path, params=params, headers=api.h("read", **headers))
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (path, r.text)
            assert r.text.startswith("<!doctype html>") and shown in r.text, (path, r.text[:2000])
    assert_exception(api.client.get("/ogc/processes", params={"f": "xml"}, headers=api.h("read")), 400)
    assert api.client.get("/ogc/api", params={"f": "html"}).headers["content-type"].startswith("text/html")


def test_job_list_pages_and_filters(api: Api) -> None:
    """/conf/job-list: statusInfo of each job, `next` links page through without repeats; status and processID
    filter; an unknown status is a 400."""
    done = [execute(api, "fanout", {"inputs": {"n": 1, "tag": f"list-{i}"}}).json()["jobID"] for i in range(3)]
    for job_id in done:
        api.work(job_id)
    queued = execute(api, "hello_world", {"inputs": {"n": 4}}).json()["jobID"]
    seen: list[str] = []
    url: str | None = "/ogc/jobs?limit=1"
    while url:
        r = api.client.get(url, headers=api.h("read"))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["jobs"]) <= 1
        for info in page["jobs"]:
            assert_status_info(info)
        seen += [j["jobID"] for j in page["jobs"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        assert len(seen) <= 10
    assert seen == [queued, *reversed(done)]
    ok = api.client.get("/ogc/jobs", params={"status": "successful"}, headers=api.h("read")).json()["jobs"]
    assert {j["jobID"] for j in ok} == set(done) and all(j["status"] == "successful" for j in ok)
    waiting = api.client.get("/ogc/jobs", params={"status": "accepted", "processID": "hello_world"},
                             headers=api.h("read")).json()["jobs"]
    assert [j["jobID"] for j in waiting] == [queued]
    assert_exception(api.client.get("/ogc/jobs", params={"status": "done"}, headers=api.h("read")), 400)


def test_dismiss_queued_finished_and_unknown_jobs(api: Api) -> None:
    """A queued job is dismissed (and stays so, no task runs); a finished one cannot be (409)."""
    queued = execute(api, "fanout", {"inputs": {"n": 2, "tag": "dismiss-queued"}}).json()["jobID"]
    r = api.client.delete(f"/ogc/jobs/{queued}", headers=api.h("submit"))
    assert r.status_code == 200 and r.json()["status"] == "dismissed", r.text
    assert_status_info(r.json())
    api.drain()
    assert api.client.get(f"/ogc/jobs/{queued}", headers=api.h("read")).json()["status"] == "dismissed"
    again = api.client.delete(f"/ogc/jobs/{queued}", headers=api.h("submit"))
    assert again.status_code == 200 and again.json()["status"] == "dismissed"
    rerun = execute(api, "fanout", {"inputs": {"n": 2, "tag": "dismiss-queued"}})  # the same inputs run again
    assert rerun.status_code == 201 and rerun.json()["jobID"] != queued and rerun.json()["status"] == "accepted"
    assert api.work(rerun.json()["jobID"])["status"] == "completed"
    finished = execute(api, "fanout", {"inputs": {"n": 1, "tag": "dismiss-done"}}).json()["jobID"]
    api.work(finished)
    assert_exception(api.client.delete(f"/ogc/jobs/{finished}", headers=api.h("submit")), 409)


def test_callback_is_retried_after_a_failed_delivery(make_api: Callable[..., Api]) -> None:
    """/conf/callback: a subscriber that answers 500 first gets the same results again (backoff, then 204)."""
    api = make_api()
    with receiver(failures=1) as got:
        r = execute(api, "hello_world", {"inputs": {"n": 1}, "subscriber": {"successUri": f"{got.url}/done"}})
        api.work(r.json()["jobID"])
        bodies = wait_for(lambda: len(got.bodies("/done")) >= 2 and got.bodies("/done"), 30, "the retried callback")
        assert bodies[0] == bodies[1] and bodies[0]["result"]["value"]["greetings"] == 1


def test_callback_survives_a_restart_of_the_http_process(tmp_path: Any) -> None:
    """The subscriber is in the database: a job that finishes while no HTTP process runs is delivered by the
    next one to start."""
    settings = api_settings(tmp_path / "data", auth_disabled=True)
    with receiver() as got:
        rt = Runtime.open(settings)
        with TestClient(create_app(settings, rt)) as client:
            r = client.post("/ogc/processes/hello_world/execution",
                            json={"inputs": {"n": 1}, "subscriber": {"successUri": f"{got.url}/done"}})
            assert r.status_code == 201, r.text
        loop = WorkerLoop(rt, ["jobs", "default-tasks"])
        while loop.run_once():  # the job runs to its end with no HTTP process up
            pass
        rt.close()
        assert got.bodies("/done") == []
        rt = Runtime.open(settings)
        try:
            with TestClient(create_app(settings, rt)):
                delivered = wait_for(lambda: got.bodies("/done"), 30, "the callback after the restart")
        finally:
            rt.close()
        assert delivered[0]["result"]["value"]["replies"] == 1


@pytest.mark.parametrize("accept, html", [("", False), ("*/*", False), ("application/json", False),
                                          (BROWSER, True), ("text/html", True),
                                          ("application/json, text/html;q=0.5", False)])
def test_html_negotiation_by_accept(api: Api, accept: str, html: bool) -> None:
    r = api.client.get("/ogc/conformance", headers={"Accept": accept} if accept else {})
    assert r.headers["content-type"].startswith("text/html" if html else "application/json"), accept


def test_core_job_list_and_callback_on_postgresql(pg_url: str, make_api: Callable[..., Api]) -> None:
    """The same routes over the PostgreSQL store (async reads on its pool): execute, status, results, job list,
    dismiss and a success callback."""
    api = make_api(database_url=pg_url)
    with receiver() as got:
        r = execute(api, "hello_world", {"inputs": {"n": 2}, "subscriber": {"successUri": f"{got.url}/done"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["jobID"]
        assert_status_info(r.json())
        api.work(job_id)
        info = api.client.get(f"/ogc/jobs/{job_id}", headers=api.h("read")).json()
        assert info["status"] == "successful" and info["progress"] == 100
        results = api.client.get(f"/ogc/jobs/{job_id}/results", headers=api.h("read")).json()
        assert results["result"]["value"]["replies"] == 2
        assert wait_for(lambda: got.bodies("/done"), 30, "the success callback") == [results]
    queued = execute(api, "fanout", {"inputs": {"n": 1, "tag": "pg"}}).json()["jobID"]
    assert api.client.delete(f"/ogc/jobs/{queued}", headers=api.h("submit")).json()["status"] == "dismissed"
    listed = api.client.get("/ogc/jobs", headers=api.h("read")).json()["jobs"]
    assert [(j["jobID"], j["status"]) for j in listed] == [(queued, "dismissed"), (job_id, "successful")]
