"""A real `geomill serve --mode standalone` process (uvicorn + worker pool, and a second HTTP process on the same
socket) on PostgreSQL, driven with httpx over loopback; keys made with `geomill api-key create` against the same
database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from rio_cogeo.cogeo import cog_validate

from api_helpers import RGB, TRACE_MARKERS, assert_problem, free_port, page_through, poll
from procs import GEOMILL, cli, geomill_env, wait_for
from services import fresh_database


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    client: httpx.Client
    env: dict[str, str]
    sources: Path
    log: Path
    keys: dict[str, str]

    def h(self, scope: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}

    def submit(self, job_type: str, params: dict, scope: str = "submit", **headers: str) -> httpx.Response:
        return self.client.post(f"/api/jobs/submit/{job_type}", json=params, headers={**self.h(scope), **headers})

    def poll(self, job_id: str, timeout: float = 120) -> dict:
        return poll(self.client, job_id, self.h("read"), timeout)


def create_key(env: dict[str, str], name: str, scopes: str) -> str:
    proc = cli(env, "api-key", "create", name, "--scopes", scopes)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def start_server(tmp: Path, database_url: str) -> Server:
    sources = tmp / "sources"
    sources.mkdir()
    port = free_port()
    env = geomill_env(tmp / "data", database_url, source_roots=json.dumps([str(sources)]), lease_seconds=3,
                      workers=2, auth_disabled="false", debug_endpoints="false", queues="[]",
                      app_mode="standalone", app_name="api-pg-test", http_processes=2)
    keys = {scope: create_key(env, f"{scope}-key", scopes)
            for scope, scopes in [("read", "read"), ("submit", "read,submit"), ("admin", "admin")]}
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*GEOMILL, "serve", "--mode", "standalone", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def ready() -> bool:
        assert proc.poll() is None, f"geomill serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            return client.get("/livez").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, 60, "geomill serve to answer /livez", interval=0.2)
    return Server(proc, client, env, sources, log, keys)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, postgres_server: None) -> Iterator[Server]:
    """One server for the module, on its own fresh database."""
    with fresh_database() as url:
        srv = start_server(tmp_path_factory.mktemp("pg-api"), url)
        try:
            yield srv
        finally:
            srv.client.close()
            if srv.proc.poll() is None:
                srv.proc.send_signal(signal.SIGTERM)
                try:
                    srv.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            kill_group(srv.proc)


def test_hello_world_completes_with_workers_on_postgres(server: Server) -> None:
    r = server.submit("hello_world", {"n": 4}, **{"X-Correlation-ID": "pg-hello"})
    assert r.status_code == 202, r.text
    assert r.headers["x-correlation-id"] == "pg-hello"
    doc = server.poll(r.json()["job_id"])
    assert doc["status"] == "completed", doc
    assert doc["result"]["greetings"] == 4 and doc["result"]["replies"] == 4
    tasks = server.client.get(f"/api/jobs/{doc['job_id']}/tasks", headers=server.h("read")).json()["items"]
    assert len(tasks) == 8 and {t["status"] for t in tasks} == {"completed"}
    assert {t["correlation_id"] for t in tasks} == {"pg-hello"}
    assert all(t["executed_by_app"].startswith("api-pg-test#") for t in tasks)
    health = server.client.get("/api/health", headers=server.h("admin")).json()
    assert health["components"]["database"]["backend"] == "postgres"
    assert health["components"]["workers"]["count"] >= 1 and health["status"] == "ok", health


def spawned_children(parent: int) -> list[int]:
    """The processes `parent` spawned with multiprocessing (worker and HTTP processes)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # the process exited meanwhile
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            children.append(int(stat.parent.name))
    return children


def listening_pids(port: int) -> set[int]:
    """The processes holding a socket that listens on `port` (/proc/net/tcp and each process's fds)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
        except OSError:  # exited meanwhile, or not ours to read
            continue
    return pids


def test_worker_processes_beside_the_api_run_at_a_lower_cpu_priority(server: Server) -> None:
    """GEOMILL_HTTP_WORKER_NICE (default 5): under CPU contention the API's requests come first (the extra HTTP
    process keeps the server's priority)."""
    http = listening_pids(server.client.base_url.port)
    workers = [pid for pid in spawned_children(server.proc.pid) if pid not in http]
    assert len(workers) == 2, workers  # GEOMILL_WORKERS=2
    api_nice = os.getpriority(os.PRIO_PROCESS, server.proc.pid)
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in workers] == [api_nice + 5] * 2
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in http] == [api_nice] * 2


def test_process_raster_from_allowed_root(server: Server) -> None:
    source = server.sources / "RGB.byte.tif"
    shutil.copy(RGB, source)
    r = server.submit("process_raster", {"source": str(source)})
    assert r.status_code == 202, r.text
    doc = server.poll(r.json()["job_id"], timeout=180)
    assert doc["status"] == "completed", doc
    [out] = doc["result"]["outputs"]
    valid, errors, _ = cog_validate(out["cog_path"])
    assert valid, errors
    outside = server.submit("process_raster", {"source": str(RGB)})  # exists, but outside the allowed roots
    assert [e["field"] for e in assert_problem(outside, 422)["errors"]] == ["source"]


def test_idempotent_resubmission(server: Server) -> None:
    first = server.submit("hello_world", {"n": 7})
    again = server.submit("hello_world", {"n": 7})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    keyed = server.submit("fanout", {"n": 1, "tag": "pg-idem"}, **{"Idempotency-Key": "pg-key-1"})
    replay = server.submit("fanout", {"n": 1, "tag": "pg-idem"}, **{"Idempotency-Key": "pg-key-1"})
    assert (keyed.status_code, replay.status_code) == (202, 200)
    assert replay.json()["job_id"] == keyed.json()["job_id"]
    other = server.submit("fanout", {"n": 2, "tag": "pg-other"}, **{"Idempotency-Key": "pg-key-1"})
    assert other.status_code == 422, other.text  # the key was used for another request
    assert server.poll(keyed.json()["job_id"])["params"]["tag"] == "pg-idem"


def test_cancel_running_job(server: Server) -> None:
    job_id = server.submit("fanout", {"n": 4, "sleep_s": 8, "tag": "pg-cancel"}).json()["job_id"]

    def running() -> bool:
        tasks = server.client.get(f"/api/jobs/{job_id}/tasks", headers=server.h("read")).json()["items"]
        return any(t["status"] == "processing" for t in tasks)

    wait_for(running, 60, "a task to start", interval=0.1)
    r = server.client.post(f"/api/jobs/{job_id}/cancel", headers=server.h("submit"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text

    def settled() -> list[dict]:
        tasks = server.client.get(f"/api/jobs/{job_id}/tasks", headers=server.h("read")).json()["items"]
        return tasks if not any(t["status"] in ("queued", "processing") for t in tasks) else []

    started = time.monotonic()
    tasks = wait_for(settled, 30, "running tasks to stop")
    assert time.monotonic() - started < 8  # stopped at a heartbeat, not after their 8 s of work
    assert {t["status"] for t in tasks} == {"cancelled"}
    doc = server.poll(job_id)
    assert doc["status"] == "cancelled" and doc["result"] is None
    assert_problem(server.client.post(f"/api/jobs/{job_id}/result", headers=server.h("read")), 405)
    done = server.submit("hello_world", {"n": 1}).json()["job_id"]
    server.poll(done)
    assert_problem(server.client.post(f"/api/jobs/{done}/cancel", headers=server.h("submit")), 409)


def test_retry_failed_tasks(server: Server) -> None:
    job_id = server.submit("fanout", {"n": 2, "fail_attempts": 3, "tag": "pg-retry"}).json()["job_id"]
    doc = server.poll(job_id)
    assert doc["status"] == "failed", doc
    for task_id in doc["error"]["failed_tasks"]:
        r = server.client.post(f"/api/tasks/{task_id}/retry", headers=server.h("submit"))
        assert r.status_code == 200, r.text
    doc = server.poll(job_id)
    tasks = server.client.get(f"/api/jobs/{job_id}/tasks", headers=server.h("read")).json()["items"]
    assert doc["status"] == "completed", (doc, [(t["status"], t["attempt"], t["finished_at"]) for t in tasks])
    assert [(t["status"], t["attempt"]) for t in tasks] == [("completed", 4), ("completed", 4)]


def test_pagination(server: Server) -> None:
    ids = [server.submit("fanout", {"n": 0, "tag": f"pg-page-{i}"}).json()["job_id"] for i in range(7)]
    pages = page_through(server.client, {"limit": 3, "job_type": "fanout"}, server.h("read"))
    listed = [j["job_id"] for p in pages for j in p]
    assert len(listed) == len(set(listed))  # no duplicates across pages
    mine = [j for j in listed if j in ids]
    assert mine == list(reversed(ids))  # newest first, none missing
    assert all(len(p) == 3 for p in pages[:-1])
    pivot = server.poll(ids[3])["created_at"]
    after = page_through(server.client, {"job_type": "fanout", "created_after": pivot, "limit": 2}, server.h("read"))
    assert [j["job_id"] for p in after for j in p] == [ids[6], ids[5], ids[4], ids[3]]


def test_auth_401_403(server: Server) -> None:
    r = server.client.post("/api/jobs/submit/hello_world", json={"n": 1})
    assert_problem(r, 401)
    assert r.headers["www-authenticate"]
    assert_problem(server.client.get("/api/jobs", headers={"X-API-Key": "gm_00000000_forged"}), 401)
    assert_problem(server.submit("hello_world", {"n": 99}, scope="read"), 403)
    assert server.client.get("/api/jobs", headers={"Authorization": f"Bearer {server.keys['read']}"}).status_code \
        == 200
    secret = create_key(server.env, "to-revoke", "admin")
    assert server.client.get("/api/jobs", headers={"X-API-Key": secret}).status_code == 200
    revoked = cli(server.env, "api-key", "revoke", secret.split("_")[1])
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 5 + 5  # the server caches key lookups for up to 5 s (api_key_cache_seconds)
    while server.client.get("/api/jobs", headers={"X-API-Key": secret}).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still works after the cache time"
        time.sleep(0.2)
    assert_problem(server.client.get("/api/jobs", headers={"X-API-Key": secret}), 401)
    failed = server.submit("fanout", {"n": 1, "invalid_keys": [0], "tag": "pg-tb"}).json()["job_id"]
    [task_id] = server.poll(failed)["error"]["failed_tasks"]
    as_submitter = server.client.get(f"/api/tasks/{task_id}", headers=server.h("submit"))
    assert as_submitter.status_code == 200 and not any(m in as_submitter.text for m in TRACE_MARKERS)
    as_admin = server.client.get(f"/api/tasks/{task_id}", headers=server.h("admin")).json()
    assert "Traceback" in as_admin["error"]["traceback"]


def test_metrics_cover_the_workers(server: Server) -> None:
    job_id = server.submit("hello_world", {"n": 2}).json()["job_id"]
    server.poll(job_id)
    text = server.client.get("/metrics").text
    assert 'geomill_jobs{job_type="hello_world",status="completed"}' in text
    assert 'geomill_task_duration_seconds_count{task_type="demo.greet"}' in text


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body, or b"" when the server closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return data


def test_an_idle_keep_alive_connection_outlives_uvicorns_5_s_default(server: Server) -> None:
    """A connection left idle for 6 s (by a client pool or a load balancer in front) still serves its next request.
    With uvicorn's default (5 s) the server closes it, and a request sent just then fails: 1 in 30,000 did in
    bench/api_latency.py. `GEOMILL_HTTP_KEEPALIVE_SECONDS` (75) holds it longer than a load balancer's idle timeout."""
    port = server.client.base_url.port
    assert port is not None
    request = f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(request)
            assert read_response(sock).startswith(b"HTTP/1.1 200"), "the server closed the idle connection"
            time.sleep(6)


def test_http_processes_share_the_socket_and_are_replaced_and_die_with_the_server(tmp_path: Path,
                                                                                   pg_url: str) -> None:
    """GEOMILL_HTTP_PROCESSES=2: a second process accepts on the server's socket; SIGKILLed, it is replaced while
    the server keeps answering; when the server itself is SIGKILLed, nothing is left holding the port."""
    srv = start_server(tmp_path, pg_url)
    port = srv.client.base_url.port
    try:

        def both() -> set[int] | None:
            pids = listening_pids(port)
            return pids if len(pids) == 2 else None

        pids = wait_for(both, 30, "2 HTTP processes")
        assert srv.proc.pid in pids
        [extra] = pids - {srv.proc.pid}
        assert extra in spawned_children(srv.proc.pid)
        answered = set()
        for _ in range(8):  # fresh connections: the kernel hands each to whichever process waits in accept
            with httpx.Client(base_url=str(srv.client.base_url), timeout=10) as fresh:
                answered.add(fresh.get("/api/jobs", headers=srv.h("read")).status_code)
        assert answered == {200}
        os.kill(extra, signal.SIGKILL)
        job_id = srv.submit("hello_world", {"n": 2}).json()["job_id"]
        assert srv.poll(job_id)["status"] == "completed"
        replaced = wait_for(lambda: (listening_pids(port) - {srv.proc.pid, extra}) or None, 30,
                            "a new HTTP process")
        assert len(replaced) == 1 and f"HTTP process {extra} exited" in srv.log.read_text()
        srv.proc.kill()  # the server only, not its group: its children must notice by themselves
        srv.proc.wait(10)
        wait_for(lambda: not listening_pids(port), 15, "the HTTP processes to exit with their parent")
    finally:
        srv.client.close()
        kill_group(srv.proc)


def test_sigterm_stops_server_and_workers_promptly(tmp_path: Path, pg_url: str) -> None:
    srv = start_server(tmp_path, pg_url)
    try:
        doc = srv.poll(srv.submit("hello_world", {"n": 2}).json()["job_id"])
        assert doc["status"] == "completed"
        srv.proc.send_signal(signal.SIGTERM)  # to the server process only, as an orchestrator does
        started = time.monotonic()
        assert srv.proc.wait(20) == 0, srv.log.read_text()[-3000:]
        assert time.monotonic() - started < 15

        def group_gone() -> bool:
            try:
                os.killpg(srv.proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(group_gone, 10, "the worker processes to exit")
    finally:
        srv.client.close()
        kill_group(srv.proc)
