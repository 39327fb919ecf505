"""schemathesis against the app's own OpenAPI document: no 5xx, and every response matches what the document
declares (status code, content type, headers, body schema): every check schemathesis has (`--checks all`, ALL_CHECKS
below) on every operation, one exclusion for submit and /jobs/run written in `_excluded`.

Two apps: auth disabled (the document then declares no security), and auth on, called with an admin key (the auth
checks then send requests without it and expect 401). Debug endpoints are on, so every operation is reachable, and
jobs in every state are seeded so list and status documents have content."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import Receive, Scope, Send

from api_helpers import QUEUES, api_settings
from geomill.api import create_app
from geomill.runtime import Runtime
from geomill.service.keys import create_key
from geomill.worker.loop import WorkerLoop


class Deferred:
    """An ASGI app that forwards to `app`, set once the runtime is open (schemathesis.pytest.from_fixture fails
    under pytest 9 - it reads request.node._nodeid - so the schema is loaded at import, before any fixture)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


DATA_DIR = Path(tempfile.mkdtemp(prefix="geomill-schemathesis-"))
OPEN = api_settings(DATA_DIR, auth_disabled=True, debug_endpoints=True)
SECURED = api_settings(DATA_DIR, auth_disabled=False, debug_endpoints=True)
OPEN_APP, SECURED_APP = Deferred(create_app(OPEN)), Deferred(create_app(SECURED))  # /openapi.json needs no runtime
# unknown query parameters and headers are ignored, as HTTP APIs do; the document does not promise to refuse them
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
open_schema = schemathesis.openapi.from_asgi("/openapi.json", OPEN_APP, config=CONFIG)
secured_schema = schemathesis.openapi.from_asgi("/openapi.json", SECURED_APP, config=CONFIG)
ADMIN: dict[str, str] = {}
load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())  # `--checks all`: not only the ones a default config enables


def _seed(rt: Runtime) -> dict[str, str]:
    """A completed, a failed, a queued and a cancelled job, and a dead letter; the jobs' ids."""
    orch = rt.orchestrator
    ids = {
        "completed": orch.submit("hello_world", {"n": 2}).job.job_id,
        "failed": orch.submit("fanout", {"n": 2, "invalid_keys": [1], "tag": "st-failed"}).job.job_id,
    }
    loop = WorkerLoop(rt, QUEUES)
    while loop.run_once():
        pass
    ids["queued"] = orch.submit("fanout", {"n": 3, "tag": "st-queued"}).job.job_id
    ids["cancelled"] = orch.submit("fanout", {"n": 3, "tag": "st-cancelled"}).job.job_id
    while loop.handle_one_event():
        pass
    rt.store.cancel_job(ids["cancelled"])
    rt.store.add_dead_letter("worker", "seeded", {"task_type": "nope"}, job_id=ids["failed"])
    return ids


@pytest.fixture(scope="module", autouse=True)
def seeded() -> Iterator[tuple[Runtime, dict[str, str]]]:
    rt = Runtime.open(OPEN)
    OPEN_APP.app, SECURED_APP.app = create_app(OPEN, rt), create_app(SECURED, rt)
    ADMIN["X-API-Key"] = create_key(rt.store, "schemathesis", ["admin"])[1]
    try:
        yield rt, _seed(rt)
    finally:
        rt.close()
        shutil.rmtree(DATA_DIR, ignore_errors=True)


def _opaque_cursor_removed(case: schemathesis.Case) -> schemathesis.Case:
    """A cursor is opaque: no JSON Schema says which strings this API issued, so a generated one is refused (422)
    although "schema-valid". Bad cursors are covered in test_bad_input."""
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    paged = ("/api/jobs", "/api/jobs/{job_id}/tasks", "/api/debug/job/{job_id}/tasks")
    if case.operation.path in paged and isinstance(case.query, dict) and not negative:
        case.query.pop("cursor", None)
    return case


# bodies whose schema depends on what they name: a job type's parameters; a contract's inputs (issue 23)
REFUSABLE_BODIES = ("/api/jobs/submit/{job_type}", "/jobs/run")


def _excluded(case: schemathesis.Case) -> list:
    """A submission's body schema is its job type's (GET /api/job-types), which the document cannot tie to the path
    parameter: it declares any object, and the API refuses unknown parameters (issue 20). So an object schemathesis
    calls valid may be refused there; every other check still applies."""
    return [positive_data_acceptance] if case.operation.path in REFUSABLE_BODIES else []


@open_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_conforms_auth_disabled(case: schemathesis.Case) -> None:
    _opaque_cursor_removed(case).call_and_validate(checks=ALL_CHECKS, excluded_checks=_excluded(case))


@secured_schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_conforms_with_admin_key(case: schemathesis.Case) -> None:
    _opaque_cursor_removed(case).call_and_validate(headers=ADMIN, checks=ALL_CHECKS, excluded_checks=_excluded(case))


def test_all_checks_run_on_every_operation() -> None:
    """The runs above use every registered check, and both documents reach every operation of the app."""
    names = {c.__name__ for c in ALL_CHECKS}
    assert {"not_a_server_error", "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance",
            "use_after_free", "ignored_auth", "unsupported_method", "missing_required_header"} <= names
    routes = {(m, r.path) for r in OPEN_APP.app.routes for m in getattr(r, "methods", ()) or ()
              if getattr(r, "include_in_schema", False)}
    for schema in (open_schema, secured_schema):
        operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
        assert routes <= operations, sorted(routes - operations)


def test_real_documents_match_their_schema(seeded: tuple[Runtime, dict[str, str]]) -> None:
    """Random ids mostly hit 404s: check the documents of real jobs and tasks in every state, and refusals."""
    rt, ids = seeded
    client = TestClient(SECURED_APP.app)
    task_ids = [t.task_id for j in ids.values() for t in rt.store.list_tasks(j)]
    calls = [("GET", "/api/jobs", "/api/jobs"), ("GET", "/api/job-types", "/api/job-types"),
             ("GET", "/api/health", "/api/health"), ("GET", "/api/dead-letters", "/api/dead-letters"),
             ("GET", "/api/debug/stuck-jobs", "/api/debug/stuck-jobs?idle_seconds=0"),
             ("GET", "/metrics", "/metrics"), ("GET", "/readyz", "/readyz")]
    for job_id in ids.values():
        calls += [("GET", "/api/jobs/status/{job_id}", f"/api/jobs/status/{job_id}"),
                  ("GET", "/api/jobs/{job_id}", f"/api/jobs/{job_id}"),
                  ("GET", "/api/jobs/{job_id}/tasks", f"/api/jobs/{job_id}/tasks"),
                  ("GET", "/api/jobs/{job_id}/result", f"/api/jobs/{job_id}/result"),
                  ("GET", "/api/debug/job/{job_id}/tasks", f"/api/debug/job/{job_id}/tasks")]
    calls += [("GET", "/api/tasks/{task_id}", f"/api/tasks/{t}") for t in task_ids]
    calls += [("POST", "/api/jobs/{job_id}/cancel", f"/api/jobs/{ids['completed']}/cancel"),
              ("POST", "/api/jobs/{job_id}/resubmit", f"/api/jobs/{ids['queued']}/resubmit"),
              ("POST", "/api/tasks/{task_id}/retry", f"/api/tasks/{task_ids[0]}/retry"),
              ("POST", "/api/jobs/submit/{job_type}", "/api/jobs/submit/hello_world")]
    seen = set()
    for method, template, url in calls:
        for headers in (ADMIN, {}):
            r = client.request(method, url, headers=headers, json={"n": 1} if "submit" in url else None)
            assert r.status_code < 500, (url, r.text)
            seen.add(r.status_code)
            declared = secured_schema[template][method].definition.raw["responses"]
            assert str(r.status_code) in declared, (method, url, r.status_code, sorted(declared))
            secured_schema[template][method].validate_response(r)
    assert {200, 202, 401, 409, 422} <= seen  # documents and refusals were both checked
