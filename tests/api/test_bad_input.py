"""Bad input corpus: each request is refused with the right 4xx `application/problem+json` document, no stack trace,
and nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api_helpers import Api, assert_problem
from geomill.domain import StoreError

LIMIT = 1_048_576  # the default max_body_bytes
JSON = {"content-type": "application/json"}
SUBMIT = "/api/jobs/submit/hello_world"
RASTER = "/api/jobs/submit/process_raster"
UNKNOWN = "0" * 64


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked): the limit must hold while streaming."""
    yield b'{"n": 1, "pad": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


def _huge_json() -> bytes:
    return b'{"n": 1, "pad": "' + b"x" * (LIMIT + 10) + b'"}'


# (id, method, path, request kwargs, status, field named in `errors` or None)
CASES: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    ("malformed-json", "POST", SUBMIT, {"content": b'{"n": 3', "headers": JSON}, 422, "body"),
    ("not-json", "POST", SUBMIT, {"content": b"n=3", "headers": JSON}, 422, "body"),
    ("empty-body", "POST", SUBMIT, {"content": b"", "headers": JSON}, 422, "body"),
    ("json-array", "POST", SUBMIT, {"json": [{"n": 1}]}, 422, "body"),
    ("json-string", "POST", SUBMIT, {"json": "n=1"}, 422, "body"),
    ("json-number", "POST", SUBMIT, {"json": 3}, 422, "body"),
    ("wrong-type-str", "POST", SUBMIT, {"json": {"n": "three"}}, 422, "n"),
    ("wrong-type-list", "POST", SUBMIT, {"json": {"n": [1]}}, 422, "n"),
    ("out-of-range", "POST", SUBMIT, {"json": {"n": 10**9}}, 422, "n"),
    ("negative", "POST", SUBMIT, {"json": {"n": -1}}, 422, "n"),
    ("fanout-stages", "POST", "/api/jobs/submit/fanout", {"json": {"stages": 0}}, 422, "stages"),
    ("raster-missing-source", "POST", RASTER, {"json": {}}, 422, "source"),
    ("raster-source-int", "POST", RASTER, {"json": {"source": 5}}, 422, "source"),
    ("raster-bad-compression", "POST", RASTER, {"json": {"source": "bronze://a.tif", "compression": "ZZZ"}}, 422,
     "compression"),
    ("raster-bad-crs", "POST", RASTER, {"json": {"source": "bronze://a.tif", "target_crs": "EPSG:-7"}}, 422,
     "target_crs"),
    ("huge-content-length", "POST", SUBMIT, {"content": _huge_json(), "headers": JSON}, 413, None),
    ("huge-chunked", "POST", SUBMIT, {"content": "chunked", "headers": JSON}, 413, None),
    ("long-idempotency-key", "POST", SUBMIT, {"json": {"n": 1}, "headers": {"Idempotency-Key": "k" * 300}}, 422,
     "idempotency-key"),
    ("unknown-job-type", "POST", "/api/jobs/submit/no_such_type", {"json": {}}, 404, "job_type"),
    ("unknown-job-status", "GET", f"/api/jobs/status/{UNKNOWN}", {}, 404, None),
    ("unknown-job", "GET", f"/api/jobs/{UNKNOWN}", {}, 404, None),
    ("unknown-job-tasks", "GET", f"/api/jobs/{UNKNOWN}/tasks", {}, 404, None),
    ("unknown-job-result", "GET", f"/api/jobs/{UNKNOWN}/result", {}, 404, None),
    ("unknown-job-cancel", "POST", f"/api/jobs/{UNKNOWN}/cancel", {}, 404, None),
    ("unknown-job-resubmit", "POST", f"/api/jobs/{UNKNOWN}/resubmit", {}, 404, None),
    ("unknown-task", "GET", "/api/tasks/no-such-task", {}, 404, None),
    ("unknown-task-retry", "POST", "/api/tasks/no-such-task/retry", {}, 404, None),
    ("unknown-route", "GET", "/api/no/such/route", {}, 404, None),
    ("too-long-id", "GET", "/api/jobs/status/" + "a" * 300, {}, 422, "job_id"),
    ("not-a-job-id", "GET", "/api/jobs/status/../../etc/passwd", {}, 404, None),  # normalised by the client
    ("malformed-job-id", "GET", "/api/jobs/status/ABC", {}, 422, "job_id"),
    ("job-id-submit", "POST", "/api/jobs/submit/cancel", {}, 404, "job_type"),  # the submit route, not cancel
    ("bad-limit", "GET", "/api/jobs", {"params": {"limit": 0}}, 422, "limit"),
    ("limit-not-int", "GET", "/api/jobs", {"params": {"limit": "ten"}}, 422, "limit"),
    ("bad-date", "GET", "/api/jobs", {"params": {"created_after": "yesterday"}}, 422, "created_after"),
    ("bad-status", "GET", "/api/jobs", {"params": {"status": "exploded"}}, 422, "status"),
    ("repeated-param", "GET", "/api/jobs", {"params": [("status", "queued"), ("status", "failed")]}, 422, "status"),
    ("bad-cursor", "GET", "/api/jobs", {"params": {"cursor": "bm90LWEtY3Vyc29y"}}, 422, "cursor"),
    ("bad-stage", "GET", f"/api/jobs/{UNKNOWN}/tasks", {"params": {"stage": 0}}, 422, "stage"),
    ("delete-jobs", "DELETE", "/api/jobs", {}, 405, None),
    ("get-submit", "GET", SUBMIT, {}, 405, None),
    ("put-submit", "PUT", SUBMIT, {"json": {"n": 1}}, 405, None),
    ("post-status", "POST", f"/api/jobs/status/{UNKNOWN}", {}, 405, None),
    ("delete-task", "DELETE", "/api/tasks/x", {}, 405, None),
    ("get-cancel", "GET", f"/api/jobs/{UNKNOWN}/cancel", {}, 405, None),
]

TRAVERSALS = [
    "bronze://../../etc/passwd",
    "bronze://in/../../../etc/passwd",
    "/etc/passwd",
    "../x.tif",
    "x.tif",
    "~/x.tif",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "s3://bucket/x.tif",
    "{data}/../../etc/passwd",
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_refused_with_problem_document(api: Api, method: str, path: str, kwargs: dict[str, Any], status: int,
                                       field: str | None) -> None:
    before = api.job_count()
    if kwargs.get("content") == "chunked":
        kwargs = {**kwargs, "content": _chunks(LIMIT + 100_000)}
    headers = {**api.h("admin"), **kwargs.pop("headers", {})}
    r = api.client.request(method, path, headers=headers, **kwargs)
    body = assert_problem(r, status)
    if field is not None:
        assert any(e["field"].split(".")[-1] == field for e in body["errors"]), body  # e.g. query.limit
    if status == 404 and "job_type" == field:
        assert {"hello_world", "fanout", "process_raster"} <= set(body["known_job_types"])
        assert "cancel" not in body["known_job_types"]
    if status == 405:
        assert r.headers.get("allow"), r.headers
    if status == 413:
        assert str(LIMIT) in body["detail"]
    assert api.job_count() == before


@pytest.mark.parametrize("source", TRAVERSALS)
def test_file_parameter_cannot_escape_storage(api: Api, source: str) -> None:
    source = source.replace("{data}", str(api.data_dir))
    r = api.submit("process_raster", {"source": source})
    body = assert_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["source"], body
    assert api.job_count() == 0


def test_nothing_refused_leaks_into_later_listing(api: Api) -> None:
    """After a burst of refusals, the store holds only the one accepted job."""
    for _, method, path, kwargs, _, _ in CASES[:15]:
        kw = dict(kwargs)
        api.client.request(method, path, headers={**api.h("admin"), **kw.pop("headers", {})}, **kw)
    assert api.submit("hello_world", {"n": 1}).status_code == 202
    listed = api.client.get("/api/jobs", headers=api.h("read")).json()["items"]
    assert [j["job_type"] for j in listed] == ["hello_world"] and api.job_count() == 1


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("boom in /srv/secret/module.py"), 500),
                                               (StoreError("connection refused to 10.0.0.7:5432"), 503)])
def test_server_side_failures_are_problems_without_internals(api: Api, error: Exception, status: int) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise error

    api.rt.store.list_jobs = broken  # type: ignore[method-assign]
    r = api.client.get("/api/jobs", headers=api.h("admin", **{"X-Correlation-ID": "trace-me"}))
    body = assert_problem(r, status)
    assert body["correlation_id"] == "trace-me"
    if status == 500:
        assert "boom" not in r.text and "/srv/secret" not in r.text
