"""The service layer without HTTP: submission (validation, path policy, idempotency, force), the status document,
listing and cursors, cancel/retry/resubmit, health and API keys, on the SQLite runtime of tests/conftest.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from geomill.domain import (
    Conflict,
    InvalidInput,
    JobStatus,
    NotFinished,
    NotFound,
    StageSpec,
    TaskSpec,
    TaskStatus,
    UnknownJobType,
)
from geomill.engine.registry import JobType
from geomill.roles import resolve_role
from geomill.runtime import Runtime
from geomill.service import keys, listing, operations, paths
from geomill.service.health import health_document, ready
from geomill.service.status import estimate, job_status, job_status_async, overall_progress
from geomill.service.submit import submit, submit_async
from geomill.store.async_access import ThreadedAsyncStore
from geomill.worker.loop import WorkerLoop


class FileParams(BaseModel):
    source: str = Field(json_schema_extra={"x-geomill-file": True})
    sources: list[str] = Field(default=[], json_schema_extra={"x-geomill-file": True})
    n: int = 1


def _plan(params: FileParams, previous: object) -> list[TaskSpec]:
    return [TaskSpec("greet-0", "demo.greet", {"index": 0})]


@pytest.fixture
def rt(make_runtime: Callable[..., Runtime]) -> Runtime:
    runtime = make_runtime()
    runtime.registry.register_job_type(JobType(name="files", description="file parameters",
                                               params_model=FileParams, stages=(StageSpec("one", _plan),),
                                               finalize=lambda params, stages: {}))
    return runtime


# submission


def test_submit_validates_once_and_gives_back_the_same_job(rt: Runtime) -> None:
    first = submit(rt, "hello_world", {"n": 2}, restricted=True)
    again = submit(rt, "hello_world", {"n": 2}, restricted=True)
    assert first.created and not again.created and again.job.job_id == first.job.job_id
    with pytest.raises(UnknownJobType):
        submit(rt, "nope", {}, restricted=False)
    with pytest.raises(InvalidInput) as bad:
        submit(rt, "hello_world", {"n": "many"}, restricted=False)
    assert [e["field"] for e in bad.value.errors] == ["n"]
    assert len(rt.store.list_jobs(None, None, 100)) == 1


def test_idempotency_key_names_the_first_job(rt: Runtime) -> None:
    first = submit(rt, "hello_world", {"n": 1}, restricted=True, idempotency_key="k")
    again = submit(rt, "hello_world", {"n": 1}, restricted=True, idempotency_key="k")
    assert first.created and not again.created and again.job.job_id == first.job.job_id
    with pytest.raises(InvalidInput):  # the key was used for another request
        submit(rt, "hello_world", {"n": 9}, restricted=True, idempotency_key="k")
    scoped = submit(rt, "hello_world", {"n": 9}, restricted=True, idempotency_key="k", client="other-client")
    assert scoped.created and scoped.job.job_id != first.job.job_id  # keys are scoped by client
    with pytest.raises(InvalidInput):  # an unknown key still goes through the path policy
        submit(rt, "files", {"source": "FILE:///etc/passwd"}, restricted=True, idempotency_key="k2")
    assert rt.store.job_for_idempotency_key("k2") is None


def test_force_reruns_a_finished_job(rt: Runtime, finish) -> None:
    sub = submit(rt, "hello_world", {"n": 1}, restricted=False)
    finish(rt, sub.job.job_id)
    assert submit(rt, "hello_world", {"n": 1}, restricted=False).job.job_id == sub.job.job_id
    forced = submit(rt, "hello_world", {"n": 1}, restricted=False, force=True)
    assert forced.created and forced.job.resubmit_of == sub.job.job_id


def test_async_submission_is_the_same_code_path(rt: Runtime) -> None:
    async def go() -> tuple[str, bool]:
        store = ThreadedAsyncStore(rt.store)
        with pytest.raises(InvalidInput):
            await submit_async(rt, store, "files", {"source": "File:///etc/passwd"}, restricted=True)
        sub = await submit_async(rt, store, "hello_world", {"n": 4}, restricted=True, correlation_id="c1")
        return sub.job.job_id, sub.created

    job_id, created = asyncio.run(go())
    assert created and rt.store.get_job(job_id).correlation_id == "c1"
    assert submit(rt, "hello_world", {"n": 4}, restricted=False).job.job_id == job_id


# path policy


@pytest.mark.parametrize("source", ["FILE:///etc/passwd", "File://localhost/etc/passwd", "file://host/x.tif",
                                    "/etc/passwd", "x.tif", "../x.tif", "~/x.tif", "s3://b/x.tif",
                                    "bronze://../../etc/passwd", "bronze://x\x00.tif", "/tmp/x\x00"])
def test_restricted_callers_are_refused_outside_the_roots(rt: Runtime, source: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        submit(rt, "files", {"source": source}, restricted=True)
    assert refused.value.errors == [{"field": "source", "message": str(refused.value)}]
    assert rt.store.list_jobs(None, None, 10) == []


def test_normalised_once_inside_the_roots(rt: Runtime, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    os.symlink(root / "a", root / "link")
    for name in ("x.tif", "y.tif"):
        (root / "a" / name).touch()
    (rt.storage.zone_path("bronze") / "in").mkdir(parents=True)
    (rt.storage.zone_path("bronze") / "in" / "z.tif").touch()
    rt.settings = rt.settings.model_copy(update={"source_roots": [root]})
    sub = submit(rt, "files", {"source": f"FILE://{root}/a/../link/x.tif", "sources": [f"{root}/a/y.tif",
                                                                                      "BRONZE://in/z.tif"]},
                 restricted=True)
    assert sub.job.params["source"] == f"file://{root.resolve()}/a/x.tif"
    assert sub.job.params["sources"] == [f"{root.resolve()}/a/y.tif", "bronze://in/z.tif"]
    os.symlink(tmp_path, root / "out")
    with pytest.raises(InvalidInput, match="sources"):
        submit(rt, "files", {"source": f"{root}/a/x.tif", "sources": [f"{root}/out/secret"]}, restricted=True)


def test_a_symlink_out_of_a_storage_zone_is_refused(rt: Runtime, tmp_path: Path) -> None:
    os.symlink(tmp_path, rt.storage.zone_path("bronze") / "out")
    with pytest.raises(InvalidInput, match="source"):
        submit(rt, "files", {"source": "bronze://out/secret.tif"}, restricted=True)


def test_the_trusted_cli_goes_through_the_same_normaliser(rt: Runtime, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel.tif").touch()
    sub = submit(rt, "files", {"source": "FILE:///etc/../etc/passwd", "sources": ["rel.tif"]}, restricted=False)
    assert sub.job.params["source"] == "file:///etc/passwd"  # allowed locally, but spelled one way
    assert sub.job.params["sources"] == [str(tmp_path.resolve() / "rel.tif")]
    with pytest.raises(InvalidInput, match="null byte"):
        submit(rt, "files", {"source": "/x\x00"}, restricted=False)


def test_file_fields_come_from_the_model() -> None:
    assert paths.file_fields(FileParams) == ("source", "sources")


# status, listing


def test_status_document_counts_progress_and_estimate(rt: Runtime, finish) -> None:
    job_id = submit(rt, "hello_world", {"n": 2}, restricted=False).job.job_id
    doc = job_status(rt.store, rt.registry, job_id)
    assert doc["status"] == "queued" and doc["progress"] == 0.0 and doc["estimated_completion"] is None
    assert [s["planned"] for s in doc["stages"]] == [False, False]
    finish(rt, job_id)
    done = asyncio.run(job_status_async(ThreadedAsyncStore(rt.store), rt.registry, job_id))
    assert done["status"] == "completed" and done["progress"] == 100.0
    assert [(s["name"], s["completed"], s["planned"]) for s in done["stages"]] == [("greet", 2, True),
                                                                                  ("reply", 2, True)]
    with pytest.raises(NotFound):
        job_status(rt.store, rt.registry, "0" * 64)


def test_progress_and_estimate_arithmetic() -> None:
    started = datetime.now(UTC) - timedelta(seconds=10)
    doc = {"status": "processing", "stage": 2, "stage_count": 2, "started_at": started.isoformat(),
           "stages": [{"stage": 1, "total": 4, "progress": 100.0}, {"stage": 2, "total": 4, "progress": 50.0}]}
    assert overall_progress(doc) == 75.0
    eta = estimate(doc, 75.0)
    assert eta is not None and abs((eta - started).total_seconds() - 10 / 0.75) < 1.0


def test_job_pages_follow_the_cursor(rt: Runtime) -> None:
    ids = {submit(rt, "hello_world", {"n": n}, restricted=False).job.job_id for n in range(5)}
    seen, cursor = [], None
    while True:
        page = listing.list_jobs(rt.store, limit=2, cursor=cursor)
        seen += [j["job_id"] for j in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert len(seen) == 5 and set(seen) == ids
    with pytest.raises(InvalidInput) as bad:
        listing.list_jobs(rt.store, cursor="not-a-cursor")
    assert bad.value.errors == [{"field": "cursor", "message": "malformed"}]


def test_tasks_results_and_short_ids(rt: Runtime, finish) -> None:
    job_id = submit(rt, "hello_world", {"n": 3}, restricted=False).job.job_id
    with pytest.raises(NotFinished):
        listing.job_result(rt.store, job_id)
    finish(rt, job_id)
    assert listing.job_result(rt.store, job_id)["result"]["greetings"] == 3
    assert len(listing.list_tasks(rt.store, job_id).items) == 6
    first = listing.list_tasks(rt.store, job_id, stage=2, limit=2)
    rest = listing.list_tasks(rt.store, job_id, stage=2, limit=2, cursor=first.next_cursor)
    assert len(first.items) == len(rest.items) + 1 == 2 and first.next_cursor and rest.next_cursor is None
    assert [t["task_key"] for t in first.items + rest.items] == sorted(t["task_key"] for t in first.items + rest.items)
    with pytest.raises(InvalidInput, match="limit"):
        listing.list_tasks(rt.store, job_id, limit=listing.MAX_PAGE + 1)
    task = listing.list_tasks(rt.store, job_id).items[0]
    assert listing.get_task(rt.store, task["task_id"])["job_id"] == job_id
    with pytest.raises(NotFound):
        listing.list_tasks(rt.store, "f" * 64)
    assert listing.resolve_job_id(rt.store, job_id[:8]) == job_id
    with pytest.raises(NotFound):
        listing.resolve_job_id(rt.store, job_id[:3])
    assert {t["name"] for t in listing.job_types(rt.registry)} >= {"hello_world", "fanout", "files"}


# operations


def test_cancel_retry_resubmit(rt: Runtime, finish) -> None:
    job_id = submit(rt, "fanout", {"n": 2}, restricted=False).job.job_id
    with pytest.raises(InvalidInput):
        operations.resubmit(rt, job_id)  # still queued
    job, changed = operations.cancel(rt.store, job_id)
    assert changed and job.status is JobStatus.CANCELLED
    assert operations.cancel(rt.store, job_id)[1] is False  # again: nothing changes, and that is no error
    done = submit(rt, "fanout", {"n": 1, "invalid_keys": [0]}, restricted=False).job.job_id
    finish(rt, done)
    with pytest.raises(Conflict, match="already failed"):
        operations.cancel(rt.store, done)
    [failed] = listing.list_tasks(rt.store, done, status=TaskStatus.FAILED).items
    assert operations.retry(rt.store, failed["task_id"]).job_id == done
    with pytest.raises(Conflict):
        operations.retry(rt.store, failed["task_id"])  # queued now, not failed
    finish(rt, done)
    again = operations.resubmit(rt, done)
    assert again.created and again.job.resubmit_of == done
    with pytest.raises(NotFound):
        operations.cancel(rt.store, "e" * 64)


def test_dead_letters_and_stuck_jobs(rt: Runtime) -> None:
    assert listing.dead_letters(rt.store) == []
    job_id = submit(rt, "hello_world", {"n": 1}, restricted=False).job.job_id
    assert [j["job_id"] for j in listing.stuck_jobs(rt.store, 0)] == [job_id]


# health, keys


def test_health_reports_components_and_required_ones(rt: Runtime) -> None:
    role = resolve_role("standalone")
    doc, down = health_document(rt, role, has_http=False)
    assert not down and doc["status"] == "degraded"  # no worker seen yet
    assert doc["components"]["database"]["status"] == "ok" and doc["components"]["storage"]["status"] == "ok"
    WorkerLoop(rt, rt.settings.queues).run_once()
    rt.store.record_worker("w1", {"mode": "standalone", "queues": ["jobs"]})
    assert health_document(rt, role)[0]["components"]["workers"]["count"] >= 1
    assert ready(rt)
    rt.store.close()
    doc, down = health_document(rt, role)
    assert down and doc["components"]["database"]["status"] == "down" and not ready(rt)


def test_api_keys_create_verify_revoke(rt: Runtime) -> None:
    key_id, secret = keys.create_key(rt.store, "ci", ["submit"])
    who = keys.verify(rt.store, secret)
    assert who is not None and who.key_id == key_id and who.has("read") and not who.has("admin")
    assert keys.verify(rt.store, secret + "x") is None
    assert [k["key_id"] for k in keys.list_keys(rt.store)] == [key_id]
    keys.revoke_key(rt.store, key_id)
    assert keys.verify(rt.store, secret) is None
    with pytest.raises(NotFound):
        keys.revoke_key(rt.store, key_id)
    with pytest.raises(InvalidInput) as bad:
        keys.create_key(rt.store, "x", ["root"])
    assert bad.value.field == "scopes"
    assert keys.hash_key(secret) != secret and len(keys.hash_key(secret)) == 64


def test_key_cache_expires() -> None:
    cache = keys.KeyCache(ttl=0.05)
    principal = keys.Principal("k", "n", ("read",))
    cache.put("h", principal)
    assert cache.get("h") == (True, principal)
    asyncio.run(asyncio.sleep(0.06))
    assert cache.get("h") == (False, None)


def test_a_missing_input_is_refused_at_submit_for_every_caller(rt: Runtime, tmp_path: Path) -> None:
    """Issue 17's start-up target: a missing input fails at once (exit 2 / 422), before any worker starts."""
    rt.settings = rt.settings.model_copy(update={"source_roots": [tmp_path]})
    for restricted in (False, True):
        for params in ({"source": str(tmp_path / "nope.tif")}, {"source": "bronze://nope.tif"},
                       {"source": "bronze://", "sources": [str(tmp_path / "nope.tif")]}):
            with pytest.raises(InvalidInput, match="no such file or folder") as refused:
                submit(rt, "files", params, restricted=restricted)
            assert refused.value.field in ("source", "sources")
    assert rt.store.list_jobs() == []
