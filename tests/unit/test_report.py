"""job_report: the document `geomill status` shows, for a finished and an unfinished job."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from geomill.engine.report import job_report
from geomill.runtime import Runtime
from geomill.worker.loop import WorkerLoop


def test_report_of_a_finished_hello_world_job(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 3}).job.job_id
    finish(runtime, job_id)
    doc = job_report(runtime.store, runtime.registry, job_id)
    json.dumps(doc)  # JSON-ready as it is
    assert doc["job_id"] == job_id and doc["job_type"] == "hello_world"
    assert (doc["status"], doc["stage"], doc["stage_count"], doc["stage_name"]) == ("completed", 2, 2, "reply")
    assert doc["params"] == {"n": 3} and doc["advances"] == 3 and doc["error"] is None
    assert doc["result"]["greetings"] == 3 and doc["result"]["replies"] == 3
    for key in ("created_at", "started_at", "finished_at"):
        datetime.fromisoformat(doc[key])
    assert doc["seconds"] >= 0
    assert [s["name"] for s in doc["stages"]] == ["greet", "reply"]
    for s in doc["stages"]:
        assert (s["total"], s["done"], s["completed"], s["progress"]) == (3, 3, 3, 100.0)
        assert (s["queued"], s["processing"], s["failed"], s["cancelled"]) == (0, 0, 0, 0)
        assert s["failure_policy"] == "fail_job"
        assert s["completed_at"] is not None and s["seconds"] >= 0
    assert doc["failed_tasks"] == [] and doc["running_tasks"] == []


def test_report_of_a_job_in_progress_lists_unplanned_stages(runtime: Runtime) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 4}).job.job_id
    loop = WorkerLoop(runtime, runtime.settings.queues)
    assert loop.run_once() and loop.run_once()  # stage 1 planned, one greeting done
    doc = job_report(runtime.store, runtime.registry, job_id)
    assert (doc["status"], doc["stage_name"], doc["finished_at"], doc["result"]) == ("processing", "greet", None, None)
    greet, reply = doc["stages"]
    assert (greet["total"], greet["done"], greet["completed"], greet["queued"], greet["progress"]) == (4, 1, 1, 3, 25.0)
    assert greet["completed_at"] is None
    assert reply == {"stage": 2, "name": "reply", "total": None, "planned": False}


def test_report_of_a_failed_job_shows_failed_tasks_without_tracebacks(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 2, "invalid_keys": [0]}).job.job_id
    finish(runtime, job_id)
    doc = job_report(runtime.store, runtime.registry, job_id)
    assert doc["status"] == "failed" and doc["error"]["type"] == "StageFailed"
    (failed,) = doc["failed_tasks"]
    assert failed["task_key"] == "s1-0000000" and failed["status"] == "failed"
    assert failed["error"]["type"] == "InvalidInput" and "traceback" not in failed["error"]
    assert doc["stages"][0]["failed"] == 1 and doc["stages"][0]["completed"] == 1
    assert [s.get("planned", True) for s in doc["stages"]] == [True, False, False]


def test_zero_task_stages_report_full_progress(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 0}).job.job_id
    finish(runtime, job_id)
    doc = job_report(runtime.store, runtime.registry, job_id)
    assert doc["status"] == "completed"
    assert [(s["total"], s["done"], s["progress"]) for s in doc["stages"]] == [(0, 0, 100.0)] * 3
