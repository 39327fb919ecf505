"""Compute contracts (issue 23): sitefit solve latency and end-to-end solve jobs per second.

- **solve latency**: the seed's sample request (20 x 30 m parcel, 10 x 8 m house), `-n` solves each (a different
  seed every time, so no two are the same job), p50/p99: in process (`run_contract`: inputs checked, solver, outputs
  checked) and over HTTP on a `geomill serve --mode appserver` process (one keep-alive connection).
- **end to end**: `--jobs` distinct `POST /jobs/run` requests (8 client threads) to a `geomill serve --mode
  standalone` (2 worker processes) whose solve tasks call that AppServer (`GEOMILL_APPSERVER_URL`), on a fresh
  PostgreSQL database (`--sqlite` for SQLite); jobs/s = jobs / (first submission to the last job completed), read from
  the jobs' own timestamps.

Usage: ``python bench/compute.py [-n 200] [--jobs 300] [--sqlite] [--no-write-md]``; replaces the section
"## Compute contracts (bench/compute.py)" of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from common import busy_cpu_seconds, pg_create_db, pg_drop_db, publish

HEADING = "## Compute contracts (bench/compute.py)"
SRC = Path(__file__).resolve().parents[1] / "src"
X0, Y0 = -742_000.0, -1_043_000.0
SAMPLE = {"crs": "EPSG:5514",
          "parcel": {"type": "Polygon", "coordinates": [[[X0, Y0], [X0 + 20, Y0], [X0 + 20, Y0 + 30], [X0, Y0 + 30],
                                                         [X0, Y0]]]},
          "house": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 8], [0, 8], [0, 0]]]}}


def inputs(seed: int) -> dict[str, Any]:
    return {**copy.deepcopy(SAMPLE), "seed": seed}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(data_dir: Path, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    env.update(PYTHONPATH=str(SRC), GEOMILL_DATA_DIR=str(data_dir), GEOMILL_LOG_LEVEL="ERROR")
    env.update({f"GEOMILL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextmanager
def serve(mode: str, env: dict[str, str], port: int, probe: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "geomill.cli", "serve", "--mode", mode, "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"geomill serve --mode {mode} exited {proc.returncode}"
            try:
                if httpx.get(url + probe, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{mode} did not start"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def percentiles(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return statistics.median(ms), q[98]


def in_process_latency(n: int) -> tuple[float, float]:
    sys.path.insert(0, str(SRC))
    from geomill.contracts import load_contracts
    from geomill.contracts.runner import run_contract

    contract = load_contracts().get("sitefit", "1.0.0")
    engine = {"mode": "in_process", "name": "bench"}
    run_contract(contract, inputs(0), engine)  # imports (shapely, pyproj) out of the timings
    ms = []
    for seed in range(1, n + 1):
        started = time.perf_counter()
        out = run_contract(contract, inputs(seed), engine)
        ms.append((time.perf_counter() - started) * 1000)
        assert out["placements"]
    return percentiles(ms)


def http_latency(url: str, n: int) -> tuple[float, float]:
    ms = []
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post("/gh/sitefit:1.0.0/solve", json={"inputs": inputs(0)}).raise_for_status()
        for seed in range(1, n + 1):
            started = time.perf_counter()
            r = client.post("/gh/sitefit:1.0.0/solve", json={"inputs": inputs(seed)})
            ms.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200 and r.json()["placements"], r.text
    return percentiles(ms)


def api_key(env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "geomill.cli", "api-key", "create", "bench", "--scopes", "submit"],
                          env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


def end_to_end(appserver: str, jobs: int, tmp: Path, database_url: str | None) -> dict[str, float]:
    settings: dict[str, object] = {"workers": 2, "appserver_url": appserver, "app_name": "bench-compute"}
    if database_url:
        settings["database_url"] = database_url
    env = env_for(tmp / "data", **settings)
    headers = {"X-API-Key": api_key(env)}
    with serve("standalone", env, free_port(), "/livez") as url, httpx.Client(base_url=url, timeout=60) as client:
        cpu0, t0 = busy_cpu_seconds(), time.monotonic()

        def submit(seed: int) -> str:
            body = {"app_id": "bench", "definition": "sitefit", "version": "1.0.0", "inputs": inputs(10_000 + seed)}
            r = client.post("/jobs/run", json=body, headers=headers)
            assert r.status_code == 202, r.text
            return str(r.json()["job_id"])

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(submit, range(jobs)))
        submitted = time.monotonic() - t0
        docs: dict[str, dict[str, Any]] = {}
        while len(docs) < len(ids):
            for job_id in ids:
                if job_id not in docs:
                    doc = client.get(f"/jobs/status/{job_id}", headers=headers).json()
                    if doc["status"] not in ("queued", "processing"):
                        docs[job_id] = doc
            time.sleep(0.2)
        cpu = busy_cpu_seconds() - cpu0
    failed = [d for d in docs.values() if d["status"] != "completed"]
    assert not failed, failed[:3]
    first = min(datetime.fromisoformat(d["created_at"]) for d in docs.values())
    last = max(datetime.fromisoformat(d["finished_at"]) for d in docs.values())
    span = (last - first).total_seconds()
    return {"jobs": jobs, "seconds": span, "jobs_per_s": jobs / span, "submit_seconds": submitted, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="solves per latency series")
    ap.add_argument("--jobs", type=int, default=300, help="solve jobs end to end")
    ap.add_argument("--sqlite", action="store_true", help="end to end on SQLite instead of PostgreSQL")
    ap.add_argument("--no-write-md", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    local = in_process_latency(args.n)
    with tempfile.TemporaryDirectory(prefix="geomill-bench-compute-") as tmp_name:
        tmp = Path(tmp_name)
        with serve("appserver", env_for(tmp / "as"), free_port(), "/ready") as appserver:
            remote = http_latency(appserver, args.n)
            db = None if args.sqlite else pg_create_db("bench_compute")
            try:
                url = None if db is None else f"postgresql://postgres@127.0.0.1:5432/{db}"
                e2e = end_to_end(appserver, args.jobs, tmp, url)
            finally:
                if db:
                    pg_drop_db(db)
    store = "SQLite" if args.sqlite else "PostgreSQL"
    section = "\n".join([
        HEADING, "",
        f"`python bench/compute.py -n {args.n} --jobs {args.jobs}{' --sqlite' if args.sqlite else ''}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, 2 CPUs shared with other sessions (1-minute load average "
        f"{load:.1f} at the start). The seed's sitefit sample (20 x 30 m parcel, 10 x 8 m house, rotations every 15 "
        "degrees), a different seed per solve.", "",
        "| what | p50 | p99 |", "|---|---|---|",
        f"| solve in process (`run_contract`: inputs checked, solver, outputs checked), n = {args.n} | "
        f"{local[0]:.1f} ms | {local[1]:.1f} ms |",
        f"| solve on `geomill serve --mode appserver` over HTTP (one keep-alive connection), n = {args.n} | "
        f"{remote[0]:.1f} ms | {remote[1]:.1f} ms |", "",
        f"End to end, {store}: {e2e['jobs']} distinct `POST /jobs/run` requests from 8 client threads to `geomill "
        "serve --mode standalone` (2 worker processes) → `solve-tasks` → the AppServer → result and artifact rows: "
        f"**{e2e['jobs_per_s']:.1f} jobs/s** (first job created to last job finished: {e2e['seconds']:.1f} s; the "
        f"submissions took {e2e['submit_seconds']:.1f} s; the machine was busy {e2e['cpu']:.0f} CPU-seconds over "
        "the run, every process included).", ""])
    publish(HEADING, section, not args.no_write_md)


if __name__ == "__main__":
    main()
