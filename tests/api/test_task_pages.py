"""Task listings are keyset pages (issue 20, hole 4): a page of a huge job costs O(limit), never a sort of the job,
and no list endpoint answers more than MAX_PAGE items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api_helpers import Api, assert_problem, page_through
from geomill.domain import FailurePolicy, NewJob, NewTask, make_task_id
from geomill.engine.ports import Store
from geomill.service.listing import MAX_PAGE

N = 20_000


def big_job(store: Store, n: int) -> tuple[str, list[tuple[int, str]]]:
    """A job whose stage 1 holds `n` queued tasks (PostgreSQL inserts them with COPY); its (stage, key)s in order."""
    job_id = "b" * 64
    store.create_job(NewJob(job_id, "fanout", {"n": n}, 2, None))
    keys = [f"k{i}" for i in range(n)]  # unpadded: the order is the text order, k10 before k2
    tasks = [NewTask(make_task_id(job_id, 1, k), k, "demo.work", {"key": k}, "default-tasks", 3, 60.0) for k in keys]
    assert store.start_stage(job_id, 1, "work", FailurePolicy.FAIL_JOB, tasks)
    return job_id, sorted((1, k) for k in keys)


def plan(store: Store, after: tuple[int, str]) -> str:
    """The plan of a page after a cursor, as `list_tasks` builds it."""
    s = store._sql  # type: ignore[attr-defined]
    sql = s.tasks + s.and_after_task + s.tasks_order + s.and_limit
    args = {"job_id": "b" * 64, "after_stage": after[0], "after_key": after[1], "limit": 11}
    if store.dialect == "postgres":
        store._write("ANALYZE tasks")  # type: ignore[attr-defined]
        return "\n".join(r["QUERY PLAN"] for r in store._read("EXPLAIN " + sql, args))  # type: ignore[attr-defined]
    return "\n".join(r["detail"] for r in store._read("EXPLAIN QUERY PLAN " + sql, args))  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def big(request: pytest.FixtureRequest, make_api: Callable[..., Api]) -> tuple[Api, str, list[tuple[int, str]]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    api = make_api(database_url=url, debug_endpoints=True)
    return (api, *big_job(api.rt.store, N))


def test_a_page_of_a_huge_job_is_a_keyset_page_and_the_cursors_walk_every_task_once(
        big: tuple[Api, str, list[tuple[int, str]]]) -> None:
    api, job_id, expected = big
    r = api.client.get(f"/api/jobs/{job_id}/tasks", params={"limit": 10}, headers=api.h("read"))
    assert r.status_code == 200, r.text
    first: dict[str, Any] = r.json()
    assert [(t["stage"], t["task_key"]) for t in first["items"]] == expected[:10] and first["next_cursor"]
    nxt = api.client.get(f"/api/jobs/{job_id}/tasks", params={"limit": 10, "cursor": first["next_cursor"]},
                         headers=api.h("read")).json()
    assert [(t["stage"], t["task_key"]) for t in nxt["items"]] == expected[10:20]

    pages = page_through(api.client, {"limit": MAX_PAGE}, api.h("read"), f"/api/jobs/{job_id}/tasks")
    assert [len(p) for p in pages] == [MAX_PAGE] * (N // MAX_PAGE)
    assert [(t["stage"], t["task_key"]) for p in pages for t in p] == expected
    dump = page_through(api.client, {"limit": MAX_PAGE}, api.h("admin"), f"/api/debug/job/{job_id}/tasks")
    assert sum(len(p) for p in dump) == N

    steps = plan(api.rt.store, expected[N // 2])
    assert "Sort" not in steps and "TEMP B-TREE" not in steps, steps  # the unique (job_id, stage, task_key) index
    assert "Seq Scan" not in steps, steps


@pytest.mark.parametrize("path", ["/api/jobs/{job_id}/tasks", "/api/debug/job/{job_id}/tasks", "/api/jobs",
                                  "/api/dead-letters"])
def test_every_list_endpoint_refuses_a_page_above_its_maximum(make_api: Callable[..., Api], path: str) -> None:
    api = make_api(debug_endpoints=True)
    job_id = api.submit("hello_world", {"n": 1}).json()["job_id"]
    r = api.client.get(path.format(job_id=job_id), params={"limit": MAX_PAGE + 1}, headers=api.h("admin"))
    assert [e["field"].split(".")[-1] for e in assert_problem(r, 422)["errors"]] == ["limit"]
    ok = api.client.get(path.format(job_id=job_id), params={"limit": 500}, headers=api.h("admin"))
    assert ok.status_code == 200, ok.text


def test_a_malformed_task_cursor_is_a_422_naming_it(api: Api) -> None:
    job_id = api.submit("hello_world", {"n": 1}).json()["job_id"]
    for cursor in ("not-a-cursor", "eHx5"):  # no separator; "x|y": no stage number
        r = api.client.get(f"/api/jobs/{job_id}/tasks", params={"cursor": cursor}, headers=api.h("read"))
        assert [e["field"] for e in assert_problem(r, 422)["errors"]] == ["cursor"]
