"""Issue 20, faces and attacks over HTTP: huge integers, non-standard JSON, lenient input, drill job types, reused
idempotency keys, what health and 422s reveal, forged Host headers, the state database as a source."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from api_helpers import Api, assert_problem, free_port
from geomill.api import create_app
from geomill.service.keys import create_key

JSON = {"content-type": "application/json"}
HUGE = "99999999999999999999"  # above 2^63 - 1


def _fields(body: dict) -> list[str]:
    return [e["field"].split(".")[-1] for e in body["errors"]]


@pytest.mark.parametrize("param", ["stage", "limit"])
def test_huge_integer_in_a_query_is_a_422_naming_it(api: Api, param: str) -> None:
    job_id = api.submit("hello_world", {"n": 1}).json()["job_id"]
    r = api.client.get(f"/api/jobs/{job_id}/tasks", params={param: HUGE}, headers=api.h("read"))
    assert _fields(assert_problem(r, 422)) == [param]
    r = api.client.get("/api/jobs", params={"limit": HUGE}, headers=api.h("read"))
    assert _fields(assert_problem(r, 422)) == ["limit"]


@pytest.mark.parametrize("body", [b'{"n": 1, "fail_attempts": 99999999999999999999}',
                                  b'{"n": 1, "invalid_keys": [1, -99999999999999999999]}'])
def test_huge_integer_in_the_body_is_a_422_naming_it(api: Api, body: bytes) -> None:
    r = api.client.post("/api/jobs/submit/fanout", content=body, headers=api.h("submit", **JSON))
    assert _fields(assert_problem(r, 422))[0] in ("fail_attempts", "invalid_keys", "1")
    assert api.job_count() == 0


@pytest.mark.parametrize("value", [b"Infinity", b"-Infinity", b"NaN", b"1e400"])
def test_non_standard_json_is_refused(api: Api, value: bytes) -> None:
    r = api.client.post("/api/jobs/submit/fanout", content=b'{"n": 1, "sleep_s": ' + value + b"}",
                        headers=api.h("submit", **JSON))
    assert "body" in _fields(assert_problem(r, 422)) or "sleep_s" in _fields(r.json())
    assert api.job_count() == 0


@pytest.mark.parametrize(("params", "field"), [({"n": True}, "n"), ({"n": "5"}, "n"), ({"n": 2, "bogus": 1}, "bogus"),
                                               ({"n": 2.0}, "n")])
def test_lenient_parameters_are_refused(api: Api, params: dict, field: str) -> None:
    assert _fields(assert_problem(api.submit("hello_world", params), 422)) == [field]
    assert api.job_count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_submit_with_a_non_json_content_type_is_415(api: Api, content_type: str) -> None:
    r = api.client.post("/api/jobs/submit/hello_world", content=b'{"n": 3}',
                        headers=api.h("submit", **{"content-type": content_type}))
    assert_problem(r, 415)
    assert api.job_count() == 0


def test_json_with_charset_is_accepted(api: Api) -> None:
    r = api.client.post("/api/jobs/submit/hello_world", content=b'{"n": 3}',
                        headers=api.h("submit", **{"content-type": "application/json; charset=utf-8"}))
    assert r.status_code == 202, r.text


def test_debug_routes_are_not_in_the_schema_when_disabled(make_api: Callable[..., Api]) -> None:
    paths = make_api().client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if "/debug/" in p or "dead-letters" in p], paths
    paths = make_api(debug_endpoints=True).client.get("/openapi.json").json()["paths"]
    assert "/api/debug/stuck-jobs" in paths and "/api/dead-letters" in paths


def test_drill_job_types_are_off_unless_enabled(make_api: Callable[..., Api]) -> None:
    api = make_api(drill_jobs=False)
    body = assert_problem(api.submit("fanout", {"n": 1}), 404)
    assert "fanout" not in body["known_job_types"]
    listed = [t["name"] for t in api.client.get("/api/job-types", headers=api.h("read")).json()]
    assert "fanout" not in listed and "hello_world" in listed
    assert api.job_count() == 0


def test_drill_jobs_when_enabled_are_bounded(make_api: Callable[..., Api], tmp_path) -> None:
    api = make_api(drill_jobs=True)
    assert _fields(assert_problem(api.submit("fanout", {"n": 1, "sleep_s": 3601}), 422)) == ["sleep_s"]
    for outside in (str(tmp_path / "elsewhere"), "/etc", f"{api.data_dir}/../x"):
        r = api.submit("fanout", {"n": 1, "marker_dir": outside})
        assert _fields(assert_problem(r, 422)) == ["marker_dir"], outside
    assert api.job_count() == 0
    r = api.submit("fanout", {"n": 1, "marker_dir": str(api.data_dir / "markers")})
    assert r.status_code == 202, r.text


def test_reused_idempotency_key_with_a_different_request_is_refused(api: Api) -> None:
    first = api.submit("hello_world", {"n": 1}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202, first.text
    again = api.submit("hello_world", {"n": 1}, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    other_body = api.submit("hello_world", {"n": 2}, **{"Idempotency-Key": "k-1"})
    assert "idempotency-key" in _fields(assert_problem(other_body, 422))
    other_type = api.submit("fanout", {"n": 1}, **{"Idempotency-Key": "k-1"})
    assert_problem(other_type, 422)
    assert api.job_count() == 1


def test_idempotency_keys_are_scoped_by_api_key(api: Api) -> None:
    """Another client's key of the same spelling neither returns nor blocks this client's job."""
    first = api.submit("hello_world", {"n": 1}, **{"Idempotency-Key": "shared"})
    assert first.status_code == 202
    other = create_key(api.rt.store, "other", ["submit"])[1]
    r = api.client.post("/api/jobs/submit/hello_world", json={"n": 7},
                        headers={"X-API-Key": other, "Idempotency-Key": "shared"})
    assert r.status_code == 202 and r.json()["job_id"] != first.json()["job_id"], r.text


def test_anonymous_health_shows_states_not_paths(api: Api) -> None:
    r = api.client.get("/api/health")
    assert r.status_code == 200, r.text
    assert str(api.data_dir) not in r.text and socket.gethostname() not in r.text and '"pid"' not in r.text
    assert {c["status"] for c in r.json()["components"].values()} <= {"ok", "degraded", "down", "disabled"}
    admin = api.client.get("/api/health", headers=api.h("admin"))
    assert str(api.data_dir) in admin.text and '"pid"' in admin.text


def test_refusals_do_not_show_the_allowed_roots(api: Api) -> None:
    r = api.submit("process_raster", {"source": "/etc/passwd"})
    assert_problem(r, 422)
    assert str(api.data_dir) not in r.text


@pytest.mark.parametrize("roots", ["default", "data_dir"])
def test_the_state_database_cannot_be_submitted_as_a_source(make_api: Callable[..., Api], tmp_path,
                                                            roots: str) -> None:
    api = make_api(**({"source_roots": [tmp_path / f"data{0}"]} if roots == "data_dir" else {}))
    db = api.data_dir / "geomill.db"
    assert db.exists()
    for source in (str(db), f"file://{db}", f"{db}-wal", f"{api.data_dir}/bronze/../geomill.db"):
        assert _fields(assert_problem(api.submit("process_raster", {"source": source}), 422)) == ["source"], source
    assert api.job_count() == 0


def test_a_forged_host_header_reaches_no_url(make_api: Callable[..., Api]) -> None:
    api = make_api()
    forged = {"host": "evil.example"}
    r = api.submit("hello_world", {"n": 1}, **forged)
    assert r.status_code == 202 and "evil" not in r.json()["status_url"], r.text
    assert r.json()["status_url"] == f"/api/jobs/status/{r.json()['job_id']}"
    redirect = api.client.get("/api/jobs/", headers=api.h("read", **forged), follow_redirects=False)
    assert "evil" not in redirect.headers.get("location", ""), redirect.headers
    public = make_api(public_url="https://geo.example.org/geo/")
    r = public.submit("hello_world", {"n": 1}, **forged)
    assert r.json()["status_url"] == f"https://geo.example.org/geo/api/jobs/status/{r.json()['job_id']}"
    redirect = public.client.get("/api/jobs/", headers=public.h("read", **forged), follow_redirects=False)
    assert "evil" not in redirect.headers.get("location", ""), redirect.headers


@pytest.fixture
def real_server(api: Api) -> Iterator[tuple[Api, int]]:
    """The app over uvicorn in a thread (the TestClient hides what a real server does to the connection)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api.rt.settings, api.rt), host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield api, port
    server.should_exit = True
    thread.join(10)


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """One request and its whole response on `sock` (Content-Length framed, as every response here is)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += _recv(sock)
    return head + b"\r\n\r\n" + body


def test_an_unexpected_error_is_logged_with_its_correlation_id_and_keeps_the_connection(
        real_server: tuple[Api, int], caplog: pytest.LogCaptureFixture) -> None:
    api, port = real_server

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    api.rt.store.list_jobs = broken  # type: ignore[method-assign]
    key = api.keys["read"].encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, caplog.at_level(logging.ERROR):
        first = _exchange(sock, b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key +
                          b"\r\nX-Correlation-ID: trace-500\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 500") and b"application/problem+json" in first, first
        assert b"connection: close" not in first.lower(), first
        second = _exchange(sock, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection still serves
        assert second.startswith(b"HTTP/1.1 200"), second
    logged = [r for r in caplog.records if getattr(r, "correlation_id", None) == "trace-500"]
    assert logged and all(r.exc_info and r.exc_info[0] is RuntimeError for r in logged), caplog.records
