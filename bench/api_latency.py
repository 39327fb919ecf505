#!/usr/bin/env python
"""Benchmark: HTTP API latency at a fixed request rate (open loop), on PostgreSQL.

    .venv/bin/python bench/api_latency.py                       # 200 req/s, 30 s per phase, 5 rounds; BENCHMARKS.md
    .venv/bin/python bench/api_latency.py --rate 100 --duration 5 --repeat 1 --no-write-md

A fresh database ``api_bench_<random>`` on 127.0.0.1:5432 (dropped afterwards); ``geomill db upgrade``; an API key
(``geomill api-key create bench --scopes submit``; submit includes read); then, per deployment (``--modes``):

- ``standalone``: ``geomill serve --mode standalone -w 1`` -- the API and one worker process on this machine; each
  submitted job is a ``fanout`` with ``n = 0``, so the worker plans and finishes every job while the load runs
  (about 8 transactions per job: the orchestration of 200 jobs/s competes with the API for the 2 CPUs);
- ``platform_only``: ``geomill serve --mode platform_only -w 1`` -- the seed's platform app (API + orchestrator),
  task workers elsewhere (none here); each job is a ``fanout`` with ``n = 1``: the orchestrator plans its stage
  and the task waits for a worker, as a job does in production between submission and pick-up.

After 20 unmeasured submissions, the load waits until the orchestrator has planned the last of them (the spawned
worker process has imported everything and listens), then runs two phases, each at a fixed rate:

(a) submit: ``POST /api/jobs/submit/fanout`` with a distinct ``tag`` -- each request creates a job;
(b) status: ``GET /api/jobs/status/{job_id}`` of the jobs created in (a), round robin, once the orchestrator has
    caught up with (a) (how long that took is reported).

Open loop: request i is scheduled at t0 + i/rate whatever happened to earlier ones, and its latency is measured from
that scheduled time (so a stall is charged to every request it delays: no coordinated omission). The client runs on
a uvloop event loop on the same 2-CPU machine, so its own CPU is taken from the server's and is part of every figure;
it must be small. The default client (``--client lean``) writes each request by hand on up to 64 keep-alive HTTP/1.1
connections and parses responses with httptools, the C parser uvicorn uses: about 0.3-0.4 ms of CPU per request
here, against 0.7-0.9 ms for an aiohttp ClientSession (``--client aiohttp``, the client until 2026-12-03) and about
1.6 ms for httpx.AsyncClient (before that). Each phase reports the CPU spent per request by the client, the server's
process tree and PostgreSQL (/proc). The client does not collect garbage during a phase (its full collections paused
it 40-60 ms) and starts each phase on fresh connections. Each phase also reports how busy the machine's CPUs were and
how much time the hypervisor stole from them (other guests' load, outside our control, which shows as rounds that
differ a lot: hence 5 rounds by default, and the median).

Diagnosis: ``API_BENCH_TRACE=/tmp/trace.txt`` appends each request's send time (epoch s) and latency (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httptools
import httpx
import uvloop

from common import PG_ADMIN_URL, cpu_times, pg_create_db, pg_drop_db, publish  # noqa: E402  (bench/ is on sys.path when a script runs)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out" / "api_latency"
SECTION = "## HTTP API latency (bench/api_latency.py)"
GEOMILL = REPO / ".venv" / "bin" / "geomill"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{db}"
TARGETS_MS = {"submit": 25.0, "status": 10.0}  # p99


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_no_other_bench(limit_s: float = 600) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if subprocess.run(["pgrep", "-f", "bench/orchestration.py"], capture_output=True).returncode != 0:
            break
        time.sleep(15)
    return time.monotonic() - t0


def cpu_share(before: list[int], after: list[int]) -> dict[str, float]:
    """Busy and stolen shares of the CPU time between two `cpu_times()`. Steal is time the hypervisor gave this
    VM's virtual CPUs to other guests: a phase with much of it measured a slower machine than it looks."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    return {"cpu_busy": 1 - (d[3] + d[4]) / total, "cpu_steal": d[7] / total}


class _HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request at a time, the response parsed by httptools (the C parser
    uvicorn uses)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.body: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if not self.parser.should_keep_alive():
            self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))
        self.body = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)  # type: ignore[union-attr]
        return self.waiter


class LeanClient:
    """The load generator's HTTP client: requests pre-encoded by hand, up to `limit` keep-alive connections, no
    cookie jar, redirect, timeout or header object per request. It costs about a fifth of aiohttp's CPU per
    request (both are measured in every run: `client CPU`), and that CPU is the server's too on this machine.
    Same interface as the part of aiohttp.ClientSession the bench uses: `await request(method, url, body)` ->
    (status, body bytes)."""

    def __init__(self, base: str, headers: dict[str, str], limit: int = 64, max_idle: float = 4.0) -> None:
        host_port = base.split("://", 1)[1]
        self.host, port = host_port.split(":")
        self.port = int(port)
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host_port, **headers}.items())
        self.idle: list[_HttpConn] = []
        self.limit, self.open_count = limit, 0
        # like any pooling client: a connection idle this long is not reused (a server closes idle ones, uvicorn's
        # default after 5 s, and a request sent just as it does fails)
        self.max_idle = max_idle
        self.freed = asyncio.Event()

    async def _connection(self) -> _HttpConn:
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed and time.monotonic() - conn.idle_since < self.max_idle:
                    return conn
                conn.close()
                self.open_count -= 1
            if self.open_count < self.limit:
                self.open_count += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(_HttpConn, self.host, self.port)
                except BaseException:
                    self.open_count -= 1
                    raise
                return conn
            self.freed.clear()
            await self.freed.wait()

    async def request(self, method: str, url: str, body: Any = None) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {url} HTTP/1.1\r\n{self.head}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        conn = await self._connection()
        try:
            return await conn.send(head.encode() + b"\r\n" + payload)
        finally:
            if conn.closed:
                self.open_count -= 1
            else:
                conn.idle_since = time.monotonic()
                self.idle.append(conn)
            self.freed.set()

    def drop_idle(self) -> None:
        """Close the idle connections: each phase starts on fresh ones."""
        for conn in self.idle:
            conn.close()
        self.open_count -= len(self.idle)
        self.idle = []

    async def close(self) -> None:
        self.drop_idle()


class AiohttpClient:
    """aiohttp.ClientSession behind LeanClient's interface (`--client aiohttp`, the client until 2026-12-03)."""

    def __init__(self, base: str, headers: dict[str, str], limit: int = 64) -> None:
        self.session = aiohttp.ClientSession(base, headers=headers, connector=aiohttp.TCPConnector(limit=limit),
                                             timeout=aiohttp.ClientTimeout(total=30), raise_for_status=False)

    async def request(self, method: str, url: str, body: Any = None) -> tuple[int, bytes]:
        async with self.session.request(method, url, json=body) as r:
            return r.status, await r.read()

    def drop_idle(self) -> None:
        return None  # aiohttp's connector checks its idle connections itself

    async def close(self) -> None:
        await self.session.close()


CLIENTS = {"lean": LeanClient, "aiohttp": AiohttpClient}
CLIENT_TEXT = {"lean": f"`LeanClient` (HTTP/1.1 written by hand, httptools {httptools.__version__} parser)",
               "aiohttp": f"aiohttp {aiohttp.__version__} ClientSession"}


def process_cpu(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by this process (the client), the server's process tree and PostgreSQL's
    processes (/proc: utime + stime of each live process)."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[str, int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        procs[int(name)] = (comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, grew = {server_pid}, True
    while grew:
        more = {pid for pid, (_, ppid, _) in procs.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return {"client": time.process_time(),
            "server": sum(procs[p][2] for p in tree if p in procs),
            "postgres": sum(cpu for comm, _, cpu in procs.values() if comm.startswith("postgres"))}


async def open_loop(client: Any, rate: float, duration: float, make_request,
                    keep: bool = True, server_pid: int | None = None) -> dict[str, Any]:
    """Send request i at t0 + i/rate; latency = completion - scheduled time. Returns the phase's figures (with the
    parsed responses when `keep`)."""
    total = int(rate * duration)
    lat: list[float] = [0.0] * total
    errors: dict[str, int] = {}
    results: list[Any] = [None] * total

    async def one(i: int, scheduled: float) -> None:
        method, url, body = make_request(i)
        try:
            status, payload = await client.request(method, url, body)
            if status >= 300:
                errors[str(status)] = errors.get(str(status), 0) + 1
            elif keep:
                results[i] = json.loads(payload)
        except (aiohttp.ClientError, OSError, httptools.HttpParserError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        lat[i] = time.perf_counter() - scheduled

    # The client's own garbage collector paused it for 40-60 ms (full collections over the responses kept): such
    # a pause is charged to every request in flight, so the client collects before the phase, not during it.
    client.drop_idle()
    gc.collect()
    gc.disable()
    cpu0 = cpu_times()
    proc0 = process_cpu(server_pid) if server_pid else {}
    try:
        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(total):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    ms = sorted(x * 1000 for x in lat)

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))]

    trace = os.environ.get("API_BENCH_TRACE")  # diagnosis: append "<send time (epoch s)> <latency ms>" per request
    if trace:
        with open(trace, "a") as f:
            wall0 = time.time() - (time.perf_counter() - t0)
            for i, x in enumerate(lat):
                f.write(f"{wall0 + i / rate:.4f} {x * 1000:.2f}\n")
    return {"requests": total, "achieved_rps": total / elapsed, "p50": q(0.50), "p90": q(0.90), "p99": q(0.99),
            "max": ms[-1], "mean": statistics.fmean(ms), "errors": errors, "results": results,
            **cpu_share(cpu0, cpu_times()),
            # CPU ms per request by who spent it (PostgreSQL: every backend, the orchestrator's too)
            **{f"cpu_ms_{k}": (v - proc0[k]) * 1000 / total for k, v in (process_cpu(server_pid) if server_pid
                                                                         else {}).items()}}


JOB_N = {"standalone": 0, "platform_only": 1}


async def wait_planned(client: Any, job_id: str, limit_s: float = 60.0) -> None:
    """Until the orchestrator has picked up `job_id` (a spawned worker process takes a few seconds to import)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        _, body = await client.request("GET", f"/api/jobs/status/{job_id}")
        if json.loads(body)["status"] != "queued":
            await asyncio.sleep(1.0)
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"warm-up job {job_id} was not planned within {limit_s:.0f} s")


def unsettled_jobs(db: str) -> int:
    """Jobs the orchestrator has not caught up with: still queued (none planned), or running a stage of no tasks."""
    import psycopg

    with psycopg.connect(PG_URL.format(db=db)) as con:
        return con.execute("SELECT count(*) FROM jobs WHERE status = 'queued' OR (status = 'processing' AND NOT "
                           "EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.job_id))").fetchone()[0]


async def wait_settled(db: str, limit_s: float = 300.0) -> float:
    """Seconds until every submitted job is planned (platform_only) or finished (standalone, n = 0)."""
    t0 = time.monotonic()
    while unsettled_jobs(db) and time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def drive(base: str, key: str, rate: float, duration: float, warmup: int,
                n: int, db: str, client_kind: str, server_pid: int) -> dict[str, dict[str, Any]]:
    run_tag = secrets.token_hex(4)
    client = CLIENTS[client_kind](base, {"X-API-Key": key})
    try:
        # warm-up: open connections, first-request paths (not measured)
        for i in range(warmup):
            code, body = await client.request("POST", "/api/jobs/submit/fanout",
                                              {"n": n, "stages": 1, "tag": f"warm-{run_tag}-{i}"})
            if code >= 300:
                raise RuntimeError(f"warm-up submission answered {code}: {body[:500]!r}")
            last = json.loads(body)["job_id"]
        await wait_planned(client, last)  # the worker process is up (imported, listening): measure steady state
        submit = await open_loop(client, rate, duration, lambda i: (
            "POST", "/api/jobs/submit/fanout", {"n": n, "stages": 1, "tag": f"b-{run_tag}-{i}"}),
            server_pid=server_pid)
        ids = [r["job_id"] for r in submit["results"] if r and "job_id" in r]
        if not ids:
            raise RuntimeError(f"no job created: {submit['errors']}")
        created = sum(1 for r in submit["results"] if r)
        settle_s = await wait_settled(db)  # (b) reads settled jobs: the orchestrator has caught up with (a)
        await asyncio.sleep(1)
        status = await open_loop(client, rate, duration,
                                 lambda i: ("GET", f"/api/jobs/status/{ids[i % len(ids)]}", None), keep=False,
                                 server_pid=server_pid)
        submit["created"] = created
        submit["settle_s"] = settle_s
        for ph in (submit, status):
            ph.pop("results")
        return {"submit": submit, "status": status}
    finally:
        await client.close()


def run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="api-", dir=OUT))
    db = pg_create_db("api_bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    env["GEOMILL_DATABASE_URL"] = PG_URL.format(db=db)
    env["GEOMILL_DRILL_JOBS"] = "true"  # fanout is a drill job type
    data = ["--data-dir", str(workdir / "data")]
    server = None
    hogs: list[subprocess.Popen[bytes]] = []  # --neighbours
    try:
        subprocess.run([str(GEOMILL), "db", "upgrade", *data], env=env, cwd=workdir, check=True, capture_output=True)
        out = subprocess.run([str(GEOMILL), "api-key", "create", "bench", "--scopes", "submit", *data], env=env,
                             cwd=workdir, check=True, capture_output=True, text=True).stdout
        key = out.strip().splitlines()[-1].strip()
        port = free_port()
        log = open(workdir / "serve.log", "w")
        server = subprocess.Popen([str(GEOMILL), "serve", "--mode", mode, "--port", str(port), "-w", "1",
                                   "--http-processes", str(args.http_processes),
                                   *data], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server not ready: " + (workdir / "serve.log").read_text()[-3000:])
            time.sleep(0.2)
        hogs.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.neighbours))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # the client's CPU is the server's too
            phases = runner.run(drive(base, key, args.rate, args.duration, args.warmup, JOB_N[mode], db,
                                      args.client, server.pid))
        return phases
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        pg_drop_db(db)
        shutil.rmtree(workdir, ignore_errors=True)


DEPLOYMENT = {
    "standalone": "standalone -w 1 (API + 1 worker; every job fully processed during the load)",
    "platform_only": "platform_only -w 1 (API + orchestrator; task workers elsewhere)",
}


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One phase over several rounds: the median of each round's figure, and each round's p99."""
    out: dict[str, Any] = {k: statistics.median([r[k] for r in rounds]) for k in ("achieved_rps", "p50", "p90", "p99", "max")}
    out["requests"] = sum(r["requests"] for r in rounds)
    out["errors"] = {}
    for r in rounds:
        for k, v in r["errors"].items():
            out["errors"][k] = out["errors"].get(k, 0) + v
    out["p99_rounds"] = [r["p99"] for r in rounds]
    out["created"] = sum(r.get("created", 0) for r in rounds)
    out["settle_s"] = [r.get("settle_s", 0.0) for r in rounds]
    out["cpu"] = [(r.get("cpu_busy", float("nan")), r.get("cpu_steal", float("nan"))) for r in rounds]
    out["cpu_ms"] = {who: statistics.median([r.get(f"cpu_ms_{who}", float("nan")) for r in rounds])
                     for who in ("client", "server", "postgres")}
    return out


def render(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    modes = " ".join(results)
    rounds = len(next(iter(results.values())))
    lines = [SECTION, "",
             f"Measured {meta['date']} on {meta['machine']}; PostgreSQL {meta['postgresql']}, a fresh database per "
             "deployment and round; `geomill serve` with default settings and an API key (auth on; key lookups cached "
             "`GEOMILL_API_KEY_CACHE_SECONDS` = 5 s). Open loop: a request every 1/rate s, latency from its scheduled "
             f"send time (no coordinated omission); client: {CLIENT_TEXT[args.client]} on uvloop (≤ 64 keep-alive "
             "connections; status responses read, not parsed) on loopback, on the same 2 CPUs as the server and "
             "PostgreSQL, so its CPU is counted in every figure (hence a lean client: below, the CPU per request of "
             "each party). Before 2026-12-03 the client was aiohttp (about twice the CPU per request), and before "
             "that httpx (about 1.6 ms of CPU per request). The load starts once the orchestrator has "
             f"planned the warm-up jobs (before that, the spawned worker process's imports competed with it). {rounds} "
             "round(s) per deployment, deployments alternating; each figure is the median over rounds, with every "
             "round's p99 in the last column, next to the share of the machine's CPU time the hypervisor stole "
             "during that phase (other guests' load: rounds with more of it have longer tails).", "",
             f"Reproduce: `.venv/bin/python bench/api_latency.py --rate {args.rate:g} --duration {args.duration:g} "
             f"--modes {modes} --repeat {rounds}"
             + (f" --neighbours {args.neighbours}`: with {args.neighbours} busy-loop process(es) beside it" if
                getattr(args, "neighbours", 0) else "`"),
             "", "| deployment | phase | requests | target rate | achieved rate | p50 ms | p90 ms | p99 ms | max ms | "
             "errors | p99 target | met | p99 per round (CPU stolen) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    created: list[str] = []
    settled: list[str] = []
    cpu: list[str] = []
    cpu_ms: list[str] = []
    for mode, runs in results.items():
        n = JOB_N[mode]
        for name, label in (("submit", f"(a) submit `POST /api/jobs/submit/fanout` (n={n}, a new job each)"),
                            ("status", "(b) status `GET /api/jobs/status/{id}` of the jobs from (a)")):
            r = combine([run[name] for run in runs])
            if name == "submit":
                created.append(f"{mode}: {r['created']:,}")
                settled.append(f"{mode}: " + " / ".join(f"{x:.1f}" for x in r["settle_s"]) + " s")
            cpu.append(f"{mode} {name}: " + " / ".join(f"{busy:.0%} ({steal:.0%})" for busy, steal in r["cpu"]))
            cpu_ms.append(f"{mode} {name}: " + ", ".join(f"{who} {ms:.2f}" for who, ms in r["cpu_ms"].items()))
            errs = sum(r["errors"].values())
            err_txt = f"{errs}" + (f" ({', '.join(f'{k}: {v}' for k, v in r['errors'].items())})" if errs else "")
            met = "yes" if r["p99"] <= TARGETS_MS[name] and errs == 0 else "no"
            per_round = " / ".join(f"{x:.1f} ({steal:.0%})" for x, (_, steal) in zip(r["p99_rounds"], r["cpu"], strict=True))
            lines.append(f"| {DEPLOYMENT[mode]} | {label} | {r['requests']:,} | {args.rate:g}/s | "
                         f"{r['achieved_rps']:.1f}/s | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | "
                         f"{r['max']:.1f} | {err_txt} | ≤ {TARGETS_MS[name]:g} | {met} | {per_round} |")
    lines += ["", f"Jobs created ({', '.join(created)}). Between (a) and (b) the load waited until the orchestrator "
              "had caught up (every job planned, or finished when it has no tasks), per round: "
              f"{'; '.join(settled)} (in standalone one worker process plans and finishes every job, and at 200 "
              "submissions/s it falls behind, competing with the API and PostgreSQL for the 2 CPUs). "
              f"geomill {meta['geomill']}, Python {meta['python']}.", "",
              "CPU busy per round (in brackets: stolen by the hypervisor for other guests, /proc/stat), over the "
              f"whole machine during each phase: {'; '.join(cpu)}.", "",
              "CPU ms per request (median over rounds; /proc: the client process, the server's process tree with "
              "its worker or orchestrator process, and every PostgreSQL process): " + "; ".join(cpu_ms) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured submits first")
    p.add_argument("--modes", nargs="+", default=list(JOB_N), choices=list(JOB_N), help="deployments to measure")
    p.add_argument("--repeat", type=int, default=5, help="rounds per deployment, alternating (default 5)")
    p.add_argument("--client", choices=list(CLIENTS), default="lean",
                   help="load generator: lean (hand-encoded HTTP/1.1 over keep-alive connections, httptools parser; "
                        "default) or aiohttp")
    p.add_argument("--http-processes", type=int, default=1, help="geomill serve --http-processes")
    p.add_argument("--neighbours", type=int, default=0,
                   help="CPU-bound processes (busy loops at the server's priority) running through each round: a "
                        "noisy neighbour on the same CPUs, to see how much headroom the targets have; implies "
                        "--no-write-md")
    p.add_argument("--no-write-md", action="store_true")
    p.add_argument("--render", metavar="JSON", type=Path,
                   help="measure nothing: print (and write) the section of a saved run (bench/out/api_latency/last.json)")
    args = p.parse_args(argv)
    args.no_write_md = args.no_write_md or args.neighbours > 0  # BENCHMARKS.md shows the quiet machine
    if args.render:
        saved = json.loads(args.render.read_text())
        args = argparse.Namespace(**{**saved["args"], "no_write_md": args.no_write_md, "render": args.render})
        publish(SECTION, render(args, saved["results"], saved["meta"]), not args.no_write_md)
        return 0
    import importlib.metadata

    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as con:
        pg_version = con.execute("SHOW server_version").fetchone()[0]
    meta = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}", "postgresql": pg_version,
            "geomill": importlib.metadata.version("geomill"), "python": platform.python_version()}
    wait_no_other_bench()
    res: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    for _ in range(args.repeat):
        for mode in args.modes:
            res[mode].append(run(args, mode))
    # last.json is the run BENCHMARKS.md shows; a --no-write-md run goes to quick.json
    saved = OUT / ("quick.json" if args.no_write_md else "last.json")
    saved.write_text(json.dumps({"meta": meta, "args": {k: str(v) if isinstance(v, Path) else v
                                                        for k, v in vars(args).items()}, "results": res}, indent=1))
    print(json.dumps(res, indent=1))
    publish(SECTION, render(args, res, meta), not args.no_write_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
