"""The operator endpoints the console calls (issue 21), over HTTP with real jobs run by the worker loop: the jobs
list's error filter, a job's timeline, task rows, retry-failed, bulk rerun (API and CLI), queue health, and which
key may do what."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from api_helpers import Api, assert_problem, page_through
from geomill.cli import app as cli

REFUSED = "InvalidInput: task"  # the error of a fanout task told to refuse its input


def failing_jobs(api: Api, n: int = 2, tag: str = "") -> list[str]:
    """`n` fanout jobs of 4 tasks, two of which refuse their input: each job fails at stage 1."""
    ids = []
    for i in range(n):
        r = api.submit("fanout", {"n": 4, "invalid_keys": [1, 3], "tag": f"{tag}{i}"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    for job_id in ids:
        assert api.work(job_id)["status"] == "failed"
    return ids


def get(api: Api, path: str, scope: str = "read", **params: Any) -> Any:
    r = api.client.get(path, params=params, headers=api.h(scope))
    assert r.status_code == 200, r.text
    return r.json()


def test_the_error_filter_finds_jobs_by_their_failed_tasks_errors(api: Api) -> None:
    failed = failing_jobs(api)
    ok = api.submit("fanout", {"n": 2}).json()["job_id"]
    assert api.work(ok)["status"] == "completed"

    pages = page_through(api.client, {"error": REFUSED, "limit": 1}, api.h("read"))
    assert [j["job_id"] for p in pages for j in p] == failed[::-1]  # newest first, one a page
    assert get(api, "/api/jobs", error="task s1-0000001 was asked")["items"]  # the message alone
    assert get(api, "/api/jobs", error="invalidinput")["items"] == []  # case-sensitive
    assert get(api, "/api/jobs", error="%")["items"] == []  # no LIKE wildcards
    assert_problem(api.client.get("/api/jobs", params={"error": ""}, headers=api.h("read")), 422)


def test_timeline_and_task_rows_for_the_console(api: Api) -> None:
    (job_id,) = failing_jobs(api, 1)
    doc = get(api, f"/api/jobs/{job_id}/timeline")
    assert doc["status"] == "failed" and doc["stage_count"] == 3 and doc["total_tasks"] == 4
    first, *later = doc["stages"]
    assert first["counts"] == {"queued": 0, "processing": 0, "completed": 2, "failed": 2, "cancelled": 0}
    assert first["progress"] == 1.0 and first["eta_seconds"] == 0.0
    assert first["first_started_at"] <= first["last_finished_at"]
    assert [s["planned"] for s in later] == [False, False]
    assert_problem(api.client.get(f"/api/jobs/{'0' * 64}/timeline", headers=api.h("read")), 404)

    rows = get(api, f"/api/jobs/{job_id}/tasks", status="failed")["items"]
    assert [r["task_key"] for r in rows] == ["s1-0000001", "s1-0000003"]
    for row in rows:
        assert row["error_summary"].startswith(REFUSED) and row["attempt"] == 1
        assert row["executed_by_app"].startswith("api-test#") and row["target_queue"]
        assert row["created_at"] and row["execution_started_at"] and row["duration_seconds"] is not None
        assert "traceback" not in row["error"]
    admin_rows = get(api, f"/api/jobs/{job_id}/tasks", "admin", status="failed")["items"]
    assert all("traceback" in r["error"] for r in admin_rows)


def test_retry_failed_then_again_retries_nothing(api: Api) -> None:
    (job_id,) = failing_jobs(api, 1)
    r = api.client.post(f"/api/jobs/{job_id}/retry-failed", headers=api.h("submit"))
    assert r.status_code == 200 and r.json() == {"job_id": job_id, "retried": 2}
    assert api.client.post(f"/api/jobs/{job_id}/retry-failed", headers=api.h("submit")).json()["retried"] == 0
    assert api.status(job_id)["status"] == "processing"
    assert {t["status"] for t in get(api, f"/api/jobs/{job_id}/tasks", stage=1)["items"]} == {"completed", "queued"}
    assert api.work(job_id)["status"] == "failed"  # the same input is refused again, on attempt 2
    assert {t["attempt"] for t in get(api, f"/api/jobs/{job_id}/tasks", status="failed")["items"]} == {2}
    assert_problem(api.client.post(f"/api/jobs/{'0' * 64}/retry-failed", headers=api.h("submit")), 404)


def test_bulk_rerun_by_error_prefix_dry_run_first(api: Api) -> None:
    failed = failing_jobs(api, 2)
    body = {"job_type": "fanout", "error_prefix": REFUSED, "dry_run": True}
    dry = api.client.post("/api/jobs/rerun", json=body, headers=api.h("submit")).json()
    assert dry == {"matched": 2, "retried_tasks": 4, "jobs": failed[::-1], "dry_run": True}
    assert all(api.status(j)["status"] == "failed" for j in failed)

    done = api.client.post("/api/jobs/rerun", json={**body, "dry_run": False}, headers=api.h("submit")).json()
    assert done == {"matched": 2, "retried_tasks": 4, "jobs": failed[::-1], "dry_run": False}
    assert all(api.status(j)["status"] == "processing" for j in failed)
    nothing = api.client.post("/api/jobs/rerun", json={"error_prefix": "OSError"}, headers=api.h("submit")).json()
    assert nothing == {"matched": 0, "retried_tasks": 0, "jobs": [], "dry_run": False}
    for bad in ({"status": "nope"}, {"limit": 0}, {"created_after": "2024-01-01T00:00:00"}, {"extra": 1}):
        assert_problem(api.client.post("/api/jobs/rerun", json=bad, headers=api.h("submit")), 422)


def test_cli_rerun_with_the_same_filters(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = failing_jobs(api, 2)
    monkeypatch.setenv("GEOMILL_DRILL_JOBS", "true")
    base = ["jobs", "rerun", "--type", "fanout", "--error-prefix", REFUSED, "--since", "1h",
            "--data-dir", str(api.rt.settings.data_dir), "--json"]
    runner = CliRunner()
    dry = runner.invoke(cli, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert '"matched": 2' in dry.output and '"retried_tasks": 4' in dry.output and '"dry_run": true' in dry.output
    until_past = runner.invoke(cli, [*base, "--until", "2020-01-01T00:00:00Z"])
    assert until_past.exit_code == 0 and '"matched": 0' in until_past.output
    done = runner.invoke(cli, base)
    assert done.exit_code == 0 and '"retried_tasks": 4' in done.output and all(j in done.output for j in failed)
    assert all(api.status(j)["status"] == "processing" for j in failed)
    bad = runner.invoke(cli, [*base[:-1], "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_queue_health_shows_depths_and_what_each_worker_runs(
        backend: str, request: pytest.FixtureRequest, make_api: Callable[..., Api]) -> None:
    api = make_api(database_url=request.getfixturevalue("pg_url") if backend == "postgres" else None)
    job_id = api.submit("fanout", {"n": 3}).json()["job_id"]
    api.drain_events()  # stage 1 planned: 3 tasks queued
    api.rt.store.record_worker("host-a#1", {"app_name": "worker-a", "pids": [4242], "queues": ["default-tasks"],
                                            "processes": 1, "mode": "worker_vector"})
    (task,) = [t for t in api.rt.store.list_tasks(job_id, limit=1)]
    assert api.rt.store.claim_task_by_id(task.task_id, "worker-a#4242", 60.0) is not None

    doc = get(api, "/api/health/queues")
    (default,) = [q for q in doc["queues"] if q["queue"] == "default-tasks"]
    assert (default["queued"], default["running"], default["active"]) == (2, 1, 3)
    assert doc["broker"] is None and {q["queue"] for q in doc["queues"]} >= {"raster-tasks", "vector-tasks"}
    (worker,) = [w for w in doc["workers"] if w["worker_id"] == "host-a#1"]
    assert worker["running"] == 1 and worker["running_by_queue"] == {"default-tasks": 1} and worker["last_seen_at"]
    assert doc["unattributed"] == []


def test_scopes_read_keys_look_submit_keys_act(api: Api) -> None:
    (job_id,) = failing_jobs(api, 1)
    for path in ("/api/jobs?error=Invalid", f"/api/jobs/{job_id}/timeline", "/api/health/queues"):
        assert api.client.get(path, headers=api.h("read")).status_code == 200
        assert_problem(api.client.get(path), 401)
    actions = [(f"/api/jobs/{job_id}/retry-failed", None), ("/api/jobs/rerun", {"dry_run": True})]
    for path, body in actions:
        assert_problem(api.client.post(path, json=body, headers=api.h("read")), 403)
        assert_problem(api.client.post(path, json=body), 401)
    assert api.status(job_id)["status"] == "failed"  # nothing a refused call changed
    for path, body in actions:
        assert api.client.post(path, json=body, headers=api.h("submit")).status_code == 200


def test_queue_health_with_rabbitmq_adds_each_queues_messages_and_consumers(
        make_api: Callable[..., Api], pg_url: str) -> None:
    from services import fresh_vhost

    with fresh_vhost("geomill_ops") as amqp_url:
        api = make_api(database_url=pg_url, broker_url=amqp_url)
        doc = get(api, "/api/health/queues")
        assert doc["broker"] == "rabbitmq" and doc["broker_error"] is None, doc
        by_name = {q["queue"]: q for q in doc["queues"]}
        assert {"jobs", "raster-tasks", "default-tasks"} <= set(by_name)
        for queue in by_name.values():
            assert isinstance(queue["broker_messages"], int) and isinstance(queue["consumers"], int), queue
