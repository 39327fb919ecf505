"""The HTTP API with FastAPI's TestClient on the embedded SQLite default; work is done by an in-process worker loop."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from rio_cogeo.cogeo import cog_validate

from api_helpers import RGB, TRACE_MARKERS, Api, assert_problem, page_through
from geomill.service.keys import create_key


def test_hello_world_submit_poll_completed(api: Api) -> None:
    r = api.submit("hello_world", {"n": 3})
    assert r.status_code == 202, r.text
    sub = r.json()
    job_id = sub["job_id"]
    assert sub["created"] is True and sub["status"] == "queued"
    assert sub["status_url"].endswith(f"/api/jobs/status/{job_id}")
    assert_problem(api.client.get(f"/api/jobs/{job_id}/result", headers=api.h("read")), 409)

    doc = api.work(job_id)
    assert doc["status"] == "completed", doc
    assert doc["result"]["greetings"] == 3 and doc["result"]["replies"] == 3
    assert doc["stage"] == doc["stage_count"] == 2 and doc["progress"] == 100.0
    assert [(s["name"], s["total"], s["completed"]) for s in doc["stages"]] == [("greet", 3, 3), ("reply", 3, 3)]
    assert doc["started_at"] and doc["finished_at"] and doc["estimated_completion"] is None
    assert api.client.get(f"/api/jobs/{job_id}", headers=api.h("read")).json()["status"] == "completed"

    result = api.client.get(f"/api/jobs/{job_id}/result", headers=api.h("read"))
    assert result.status_code == 200 and result.json()["result"] == doc["result"]
    tasks = api.client.get(f"/api/jobs/{job_id}/tasks", headers=api.h("read")).json()["items"]
    assert len(tasks) == 6 and {t["status"] for t in tasks} == {"completed"}
    assert all(t["executed_by_app"].startswith("api-test#") and t["attempt"] == 1 for t in tasks)
    replies = api.client.get(f"/api/jobs/{job_id}/tasks", params={"stage": 2}, headers=api.h("read")).json()["items"]
    assert sorted(t["task_type"] for t in replies) == ["demo.reply"] * 3
    none_failed = api.client.get(f"/api/jobs/{job_id}/tasks", params={"status": "failed"}, headers=api.h("read"))
    assert none_failed.json() == {"items": [], "next_cursor": None}


def test_process_raster_makes_a_valid_cog(api: Api) -> None:
    (api.data_dir / "bronze" / "in").mkdir(parents=True)
    shutil.copy(RGB, api.data_dir / "bronze" / "in" / "RGB.byte.tif")
    r = api.submit("process_raster", {"source": "bronze://in/RGB.byte.tif"})
    assert r.status_code == 202, r.text
    doc = api.work(r.json()["job_id"], timeout=180)
    assert doc["status"] == "completed", doc
    [out] = doc["result"]["outputs"]
    assert out["cog_uri"].startswith("silver://") and out["valid"] is True
    cog = api.rt.storage.local_path(out["cog_uri"])
    valid, errors, _ = cog_validate(str(cog))
    assert valid, errors
    assert out["stac_item_path"] and api.rt.storage.local_path(out["stac_item_uri"]).exists()


def test_idempotent_resubmission_and_idempotency_key(api: Api) -> None:
    first = api.submit("hello_world", {"n": 2})
    again = api.submit("hello_world", {"n": 2})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["created"] is False
    assert api.job_count() == 1

    keyed = api.submit("hello_world", {"n": 4}, **{"Idempotency-Key": "order-17"})
    replay = api.submit("hello_world", {"n": 4}, **{"Idempotency-Key": "order-17"})
    assert (keyed.status_code, replay.status_code) == (202, 200)
    assert replay.json()["job_id"] == keyed.json()["job_id"] and replay.json()["created"] is False
    assert api.submit("hello_world", {"n": 5}, **{"Idempotency-Key": "order-17"}).status_code == 422
    assert api.status(keyed.json()["job_id"])["params"] == {"n": 4}
    assert api.job_count() == 2


def test_cancel_queued_job_then_conflict_on_finished_job(api: Api) -> None:
    job_id = api.submit("fanout", {"n": 5, "tag": "cancel"}).json()["job_id"]
    api.drain_events()
    assert {t["status"] for t in api.tasks(job_id)} == {"queued"}

    r = api.client.post(f"/api/jobs/{job_id}/cancel", headers=api.h("submit"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["job_id"] == job_id
    api.drain()
    doc = api.status(job_id)
    assert doc["status"] == "cancelled" and doc["result"] is None and doc["finished_at"]
    tasks = api.tasks(job_id)
    assert {t["status"] for t in tasks} == {"cancelled"} and not any(t["executed_by_app"] for t in tasks)
    assert api.client.post(f"/api/jobs/{job_id}/cancel", headers=api.h("submit")).status_code == 200

    done = api.submit("hello_world", {"n": 1}).json()["job_id"]
    api.work(done)
    body = assert_problem(api.client.post(f"/api/jobs/{done}/cancel", headers=api.h("submit")), 409)
    assert "completed" in body["detail"]
    assert api.status(done)["status"] == "completed"
    assert_problem(api.client.post(f"/api/jobs/{job_id}/cancel", headers=api.h("read")), 403)


def test_retry_failed_tasks_reopens_the_job(api: Api) -> None:
    job_id = api.submit("fanout", {"n": 2, "fail_attempts": 3, "tag": "retry"}).json()["job_id"]
    doc = api.work(job_id)
    assert doc["status"] == "failed", doc
    failed = api.tasks(job_id)
    assert [(t["status"], t["attempt"]) for t in failed] == [("failed", 3), ("failed", 3)]
    assert sorted(doc["error"]["failed_tasks"]) == sorted(t["task_id"] for t in failed)

    assert_problem(api.client.post(f"/api/tasks/{failed[0]['task_id']}/retry", headers=api.h("read")), 403)
    for t in failed:
        r = api.client.post(f"/api/tasks/{t['task_id']}/retry", headers=api.h("submit"))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "queued" and r.json()["job_id"] == job_id
    assert api.status(job_id)["status"] == "processing"

    doc = api.work(job_id)
    assert doc["status"] == "completed", doc
    assert [(t["status"], t["attempt"]) for t in api.tasks(job_id)] == [("completed", 4), ("completed", 4)]
    assert doc["result"]["completed"] == 2 and doc["result"]["failed"] == 0
    assert_problem(api.client.post(f"/api/tasks/{failed[0]['task_id']}/retry", headers=api.h("submit")), 409)
    assert_problem(api.client.post("/api/tasks/no-such-task/retry", headers=api.h("submit")), 404)


def test_resubmit_finished_job_runs_again(api: Api) -> None:
    old = api.submit("hello_world", {"n": 2}).json()["job_id"]
    assert_problem(api.client.post(f"/api/jobs/{old}/resubmit", headers=api.h("submit")), 422)  # still queued
    api.work(old)
    r = api.client.post(f"/api/jobs/{old}/resubmit", headers=api.h("submit"))
    assert r.status_code == 202, r.text
    new = r.json()["job_id"]
    assert new != old and r.json()["created"] is True
    assert api.status(new)["resubmit_of"] == old
    again = api.client.post(f"/api/jobs/{old}/resubmit", headers=api.h("submit"))
    assert again.status_code == 200 and again.json()["job_id"] == new and again.json()["created"] is False
    doc = api.work(new)
    assert doc["status"] == "completed" and doc["result"]["replies"] == 2
    assert api.job_count() == 2


def test_pagination_newest_first_without_gaps_and_filters(api: Api) -> None:
    ids = [api.submit("fanout", {"n": 0, "tag": f"page-{i}"}).json()["job_id"] for i in range(7)]
    other = api.submit("hello_world", {"n": 1}).json()["job_id"]
    newest_first = [other, *reversed(ids)]

    pages = page_through(api.client, {"limit": 3}, api.h("read"))
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [j["job_id"] for p in pages for j in p] == newest_first
    created = [datetime.fromisoformat(j["created_at"]) for p in pages for j in p]
    assert created == sorted(created, reverse=True)

    fanouts = page_through(api.client, {"limit": 3, "job_type": "fanout"}, api.h("read"))
    assert [j["job_id"] for p in fanouts for j in p] == list(reversed(ids))

    assert api.client.post(f"/api/jobs/{ids[2]}/cancel", headers=api.h("submit")).status_code == 200
    cancelled = page_through(api.client, {"status": "cancelled"}, api.h("read"))
    assert [j["job_id"] for p in cancelled for j in p] == [ids[2]]
    assert page_through(api.client, {"status": "cancelled", "job_type": "hello_world"}, api.h("read")) == [[]]

    pivot = api.status(ids[4])["created_at"]
    after = page_through(api.client, {"created_after": pivot, "limit": 2}, api.h("read"))
    assert [j["job_id"] for p in after for j in p] == [other, ids[6], ids[5], ids[4]]
    before = page_through(api.client, {"created_before": pivot}, api.h("read"))
    assert [j["job_id"] for p in before for j in p] == [ids[3], ids[2], ids[1], ids[0]]
    assert_problem(api.client.get("/api/jobs", params={"cursor": "!!not-a-cursor"}, headers=api.h("read")), 422)
    assert_problem(api.client.get("/api/jobs", params={"status": "bogus"}, headers=api.h("read")), 422)


def test_auth_401_403_and_tracebacks_for_admins_only(api: Api) -> None:
    before = api.job_count()
    r = api.client.post("/api/jobs/submit/hello_world", json={"n": 1})
    body = assert_problem(r, 401)
    assert r.headers["www-authenticate"] and "X-API-Key" in body["detail"]
    assert_problem(api.client.get("/api/jobs", headers={"X-API-Key": "gm_nope_nope"}), 401)
    assert_problem(api.client.get("/api/jobs", headers={"Authorization": "Bearer gm_nope_nope"}), 401)
    body = assert_problem(api.submit("hello_world", {"n": 1}, scope="read"), 403)
    assert "submit" in body["detail"]
    assert api.job_count() == before

    key_id, secret = create_key(api.rt.store, "short-lived", ["admin"])
    assert api.client.get("/api/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert api.rt.store.revoke_api_key(key_id)
    time.sleep(0.25)  # key lookups are cached for api_key_cache_seconds (0.2 s here)
    assert_problem(api.client.get("/api/jobs", headers={"X-API-Key": secret}), 401)
    assert_problem(api.client.get("/api/jobs", headers={"Authorization": f"Bearer {secret}"}), 401)

    job_id = api.submit("fanout", {"n": 1, "invalid_keys": [0], "tag": "tb"}, scope="admin").json()["job_id"]
    assert api.work(job_id)["status"] == "failed"
    [task] = api.client.get(f"/api/jobs/{job_id}/tasks", headers=api.h("admin")).json()["items"]
    as_admin = api.client.get(f"/api/tasks/{task['task_id']}", headers=api.h("admin"))
    assert "Traceback (most recent call last)" in as_admin.json()["error"]["traceback"]
    as_submitter = api.client.get(f"/api/tasks/{task['task_id']}", headers=api.h("submit"))
    assert as_submitter.status_code == 200 and as_submitter.json()["error"]["message"]
    assert "traceback" not in as_submitter.json()["error"]
    status = api.client.get(f"/api/jobs/status/{job_id}", headers=api.h("submit"))
    assert status.json()["failed_tasks"] and not any(m in status.text for m in TRACE_MARKERS)
    admin_status = api.client.get(f"/api/jobs/status/{job_id}", headers=api.h("admin")).json()
    assert admin_status["failed_tasks"][0]["error"]["traceback"]


def test_auth_disabled_is_explicit_and_reported(make_api: Callable[..., Api]) -> None:
    secured = make_api()
    assert secured.client.get("/api/health").json()["components"]["auth"] == {"status": "ok"}  # states only
    health = secured.client.get("/api/health", headers=secured.h("admin")).json()
    assert health["components"]["auth"] == {"status": "ok", "api_keys_required": True}
    assert secured.client.get("/api/jobs").status_code == 401

    open_api = make_api(auth_disabled=True)
    health = open_api.client.get("/api/health").json()
    assert health["components"]["auth"] == {"status": "disabled", "api_keys_required": False}
    assert open_api.client.post("/api/jobs/submit/hello_world", json={"n": 1}).status_code == 202
    assert open_api.client.get("/api/jobs").json()["items"]


DEBUG_GETS = ["/api/debug/stuck-jobs", "/api/dead-letters"]


def test_debug_endpoints_absent_unless_enabled_then_admin_only(make_api: Callable[..., Api]) -> None:
    off = make_api()
    for path in DEBUG_GETS:
        assert_problem(off.client.get(path, headers=off.h("admin")), 404)

    on = make_api(debug_endpoints=True)
    job_id = on.submit("fanout", {"n": 1, "invalid_keys": [0]}).json()["job_id"]
    on.work(job_id)
    for path in DEBUG_GETS:
        assert on.client.get(path, headers=on.h("admin")).status_code == 200
        assert_problem(on.client.get(path, headers=on.h("submit")), 403)
        assert_problem(on.client.get(path), 401)
    [task] = on.client.get(f"/api/debug/job/{job_id}/tasks", headers=on.h("admin")).json()["items"]
    assert task["status"] == "failed" and "Traceback" in task["error"]["traceback"]
    one = on.client.get(f"/api/debug/task/{task['task_id']}", headers=on.h("admin")).json()
    assert one["error"]["traceback"] == task["error"]["traceback"]
    assert_problem(on.client.post(f"/api/debug/retry-task/{task['task_id']}", headers=on.h("read")), 403)
    r = on.client.post(f"/api/debug/retry-task/{task['task_id']}", headers=on.h("admin"))
    assert r.status_code == 200 and on.status(job_id)["status"] == "processing"
    assert_problem(on.client.get(f"/api/debug/job/{'0' * 64}/tasks", headers=on.h("admin")), 404)
    assert_problem(on.client.get("/api/debug/job/nope/tasks", headers=on.h("admin")), 422)


def test_correlation_id_is_echoed_and_stored_on_job_and_tasks(api: Api) -> None:
    r = api.submit("hello_world", {"n": 2}, **{"X-Correlation-ID": "req-abc-123"})
    assert r.headers["x-correlation-id"] == "req-abc-123" and r.json()["correlation_id"] == "req-abc-123"
    job_id = r.json()["job_id"]
    assert api.work(job_id)["correlation_id"] == "req-abc-123"
    tasks = api.tasks(job_id)
    assert len(tasks) == 4 and {t["correlation_id"] for t in tasks} == {"req-abc-123"}
    one = api.client.get(f"/api/tasks/{tasks[-1]['task_id']}", headers=api.h("read")).json()
    assert one["correlation_id"] == "req-abc-123"

    fresh = api.submit("hello_world", {"n": 3})
    generated = fresh.headers["x-correlation-id"]
    assert len(generated) == 32 and generated != "req-abc-123"
    assert fresh.json()["correlation_id"] == generated == api.status(fresh.json()["job_id"])["correlation_id"]
    bad = api.client.get("/livez", headers={"X-Correlation-ID": "x" * 500})
    assert len(bad.headers["x-correlation-id"]) == 32  # an unreasonable id is replaced, not echoed
    unknown = api.client.get("/api/jobs/" + "0" * 64, headers=api.h("read", **{"X-Correlation-ID": "c-9"}))
    problem = assert_problem(unknown, 404)
    assert problem["correlation_id"] == "c-9"


def test_metrics_after_work(api: Api) -> None:
    job_id = api.submit("hello_world", {"n": 3}).json()["job_id"]
    api.work(job_id)
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'geomill_jobs{job_type="hello_world",status="completed"} 1.0' in text
    assert 'geomill_task_duration_seconds_count{task_type="demo.greet"} 3.0' in text
    assert 'geomill_task_duration_seconds_bucket{le="+Inf",task_type="demo.reply"} 3.0' in text


def test_health_components_and_probes(api: Api) -> None:
    r = api.client.get("/api/health", headers=api.h("admin"))  # the details are for admin keys
    assert r.status_code == 200, r.text
    doc = r.json()
    comps = doc["components"]
    assert {"database", "storage", "dispatch", "workers", "app_mode", "auth"} <= comps.keys()
    assert comps["database"]["status"] == "ok" and comps["database"]["backend"] == "sqlite"
    assert comps["storage"]["status"] == "ok"
    assert comps["workers"]["status"] == "degraded" and comps["workers"]["count"] == 0  # no worker pool here
    assert doc["status"] == "degraded"
    mode = comps["app_mode"]
    assert {"mode", "app_name", "queues", "queue_names", "is_platform", "is_worker", "has_http"} <= mode.keys()
    assert mode["app_name"] == "api-test" and mode["has_http"] is True
    assert api.client.get("/livez").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200


def test_health_503_when_storage_is_broken(api: Api) -> None:
    shutil.rmtree(api.data_dir / "silver")
    r = api.client.get("/api/health")
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "down" and r.json()["components"]["storage"]["status"] == "down"
    assert r.json()["components"]["database"]["status"] == "ok"
    assert api.client.get("/livez").status_code == 200


def test_readyz_503_when_database_is_gone(api: Api) -> None:
    api.rt.store.close()
    assert api.client.get("/readyz").status_code == 503
    r = api.client.get("/api/health")
    assert r.status_code == 503 and r.json()["components"]["database"]["status"] == "down"
    assert api.client.get("/livez").status_code == 200


def test_job_types_describe_parameters(api: Api) -> None:
    r = api.client.get("/api/job-types", headers=api.h("read"))
    assert r.status_code == 200
    types = {t["name"]: t for t in r.json()}
    assert {"hello_world", "fanout", "process_raster"} <= types.keys()
    assert [s["name"] for s in types["process_raster"]["stages"]] == [
        "validate", "tile_scheme", "extract_tiles", "create_cog", "mosaic", "stac_item"]  # single + tiled path
    source = types["process_raster"]["parameters"]["properties"]["source"]
    assert source["x-geomill-file"] is True and "source" in types["process_raster"]["parameters"]["required"]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs_served(api: Api, path: str) -> None:
    assert api.client.get(path).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retry_landing_while_the_stage_is_judged_is_not_lost(make_api: Callable[..., Api],
                                                               request: pytest.FixtureRequest, backend: str) -> None:
    """Retry t1; t1 completes and the orchestrator judges the stage (t2 still failed); a retry of t2 lands just before
    it writes 'failed'. The acknowledged retry must win: the job completes, t2 is not silently cancelled."""
    api = make_api(database_url=request.getfixturevalue("pg_url") if backend == "postgres" else None)
    job_id = api.submit("fanout", {"n": 2, "fail_attempts": 3, "tag": "race"}).json()["job_id"]
    t1, t2 = api.work(job_id)["error"]["failed_tasks"]
    assert api.client.post(f"/api/tasks/{t1}/retry", headers=api.h("submit")).status_code == 200
    store = api.rt.store
    real_finish = store.finish_job

    def finish_after_a_concurrent_retry(*args: object, **kwargs: object) -> bool:
        del store.finish_job  # once
        assert api.client.post(f"/api/tasks/{t2}/retry", headers=api.h("submit")).status_code == 200
        return real_finish(*args, **kwargs)

    store.finish_job = finish_after_a_concurrent_retry  # type: ignore[method-assign]
    doc = api.work(job_id)
    assert "finish_job" not in vars(store), "the orchestrator never judged the stage"
    assert doc["status"] == "completed", doc
    assert [(t["status"], t["attempt"]) for t in api.tasks(job_id)] == [("completed", 4), ("completed", 4)]


@pytest.mark.parametrize(("public_url", "root_path", "expected"), [
    (None, "", "/api/jobs/status/{id}"), (None, "/geo", "/geo/api/jobs/status/{id}"),
    ("https://geo.example.org/geo/", "/geo", "https://geo.example.org/geo/api/jobs/status/{id}"),
    ("http://127.0.0.1:8000", "", "http://127.0.0.1:8000/api/jobs/status/{id}")])
def test_status_url_is_relative_or_public_never_from_host(public_url: str | None, root_path: str,
                                                          expected: str) -> None:
    """The submission's status_url: under GEOMILL_PUBLIC_URL, else relative with the proxy's root path; the Host
    header (here forged) never appears."""
    from types import SimpleNamespace

    from fastapi import FastAPI
    from starlette.requests import Request

    from geomill.api.routers import jobs

    app = FastAPI()
    app.state.settings = SimpleNamespace(public_url=public_url)
    request = Request({"type": "http", "scheme": "http", "method": "POST", "root_path": root_path,
                       "path": f"{root_path}/api/jobs/submit/x", "query_string": b"", "app": app,
                       "router": app.router, "headers": [(b"host", b"evil.example")], "server": None})
    job_id = "ab" * 32
    assert jobs.status_url(request, job_id) == expected.format(id=job_id)
