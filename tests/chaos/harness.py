"""The chaos harness of issue 20, shared by the short CI form (tests/chaos/test_chaos.py) and the long form
(bench/chaos.py): a mixed workload (a small `process_raster`, a small `process_vector` into PostGIS and a `fanout`
of N tasks that records each execution in a marker file) runs on real `geomill worker` processes over PostgreSQL
(and RabbitMQ for the broker faults), a fault is injected, and the outcome is measured:

- lost: tasks never completed (a job that did not complete counts its unfinished tasks; a fanout task whose marker
  file was never written counts too)
- duplicated: an effect applied twice: a fanout attempt executed twice (a marker line repeated for one attempt, or
  more executions than attempts), more PostGIS rows than input features, more than one COG for the raster job
  (in the bucket when silver is on S3)
- stuck: jobs not terminal within `bound_s` after the fault
- recovery: seconds from the fault to every job terminal

Faults (FAULTS) are functions of a running Drill. Kills at exact points use the worker's fault points
(geomill/faults.py, GEOMILL_FAULT_POINT, off by default)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import rasterio
from affine import Affine

from procs import GEOMILL, geomill_env, stop, wait_for
from services import (
    S3_ENV,
    S3_HOST,
    S3_PORT,
    ensure_s3,
    fresh_bucket,
    pg_ctl,
    postgres_up,
    rabbitmqctl,
    wait_rabbitmq_app,
)
from tcp_proxy import TcpProxy

TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
FEATURES = 40
WORKER_SETTINGS: dict[str, object] = {"lease_seconds": 3, "janitor_interval_seconds": 0.5, "stall_grace_seconds": 1,
                                      "db_socket_timeout_seconds": 2, "log_level": "WARNING"}


@dataclass
class Result:
    fault: str
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    recovery_s: float | None = None
    reruns: int = 0  # executions beyond the first (at-least-once: expected after a kill)
    retried: int = 0  # fanout tasks that needed more than one attempt
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck)


@dataclass
class Drill:
    """One run: a data folder, a database, optional broker, worker processes and the jobs submitted."""

    root: Path
    pg_url: str
    broker_url: str | None = None
    n: int = 20
    sleep_s: float = 0.2
    bound_s: float = 90.0
    worker_url: str | None = None  # the database URL the workers use (a proxy's), default pg_url
    worker_broker_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    silver_bucket: str | None = None  # silver on S3 (moto): the raster job's COG goes there
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run by close(), last first
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # kind -> job_id
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def markers(self) -> Path:
        return self.root / "markers"

    def env(self, *, for_worker: bool = False, **settings: object) -> dict[str, str]:
        url = (self.worker_url or self.pg_url) if for_worker else self.pg_url
        broker = (self.worker_broker_url or self.broker_url) if for_worker else self.broker_url
        values = {**WORKER_SETTINGS, **settings}
        if broker:
            values["broker_url"] = broker
        env = geomill_env(self.data, url, **values)
        if self.silver_bucket:
            env.update(S3_ENV, GEOMILL_SILVER_URL=f"s3://{self.silver_bucket}/silver/")
        if for_worker:
            env.update(self.extra_env)
        return env

    def start_worker(self, processes: int = 2) -> subprocess.Popen[bytes]:
        log = (self.root / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen([*GEOMILL, "worker", "--processes", str(processes)], env=self.env(for_worker=True),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.workers.append(proc)
        return proc

    # workload -------------------------------------------------------------------------------------------------

    def inputs(self) -> None:
        bronze = self.data / "bronze"
        bronze.mkdir(parents=True, exist_ok=True)
        self.markers.mkdir(parents=True, exist_ok=True)
        profile = {"driver": "GTiff", "width": 96, "height": 96, "count": 1, "dtype": "uint8", "crs": "EPSG:4326",
                   "transform": Affine(0.001, 0, 7.0, 0, -0.001, 47.0)}
        with rasterio.open(bronze / f"r-{self.tag}.tif", "w", **profile) as dst:
            dst.write(np.arange(96 * 96, dtype=np.uint32).reshape(1, 96, 96).astype("uint8"))
        features = [{"type": "Feature", "properties": {"id": i, "name": f"p{i}"},
                     "geometry": {"type": "Point", "coordinates": [7 + i / 1000, 47 - i / 1000]}}
                    for i in range(FEATURES)]
        (bronze / f"v-{self.tag}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))

    def submit(self, kinds: tuple[str, ...] = ("raster", "vector", "fanout"), n: int | None = None) -> None:
        params = {
            "raster": ("process_raster", {"source": f"bronze://r-{self.tag}.tif"}),
            "vector": ("process_vector", {"source": f"bronze://v-{self.tag}.geojson", "table": f"chaos_{self.tag}"}),
            "fanout": ("fanout", {"n": n or self.n, "sleep_s": self.sleep_s, "marker_dir": str(self.markers),
                                  "tag": self.tag}),
        }
        env = self.env()
        for kind in kinds:
            job_type, values = params[kind]
            args = [a for k, v in values.items() for a in ("-p", f"{k}={json.dumps(v)}")]
            done = subprocess.run([*GEOMILL, "submit", job_type, *args], env=env, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stderr
            self.jobs[kind] = done.stdout.strip()

    # observations ---------------------------------------------------------------------------------------------

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, connect_timeout=5) as conn:
            return conn.execute(sql, args).fetchall()

    def statuses(self) -> dict[str, str]:
        try:
            rows = self.query("SELECT job_id, status FROM jobs WHERE job_id = ANY(%s)", list(self.jobs.values()))
        except psycopg.Error:
            return {}  # the server is down (a restart drill): not terminal yet
        by_id = dict(rows)
        return {kind: by_id.get(job_id, "?") for kind, job_id in self.jobs.items()}

    def task_rows(self, status: str = "processing", task_type: str = "demo.work") -> list[tuple[Any, ...]]:
        try:
            return self.query("SELECT task_id, executed_by_app, attempt FROM tasks WHERE job_id = ANY(%s) AND status = %s"
                              " AND task_type = %s", list(self.jobs.values()), status, task_type)
        except psycopg.Error:
            return []

    def wait(self, predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
        """`predicate`'s first truthy value within `timeout`, else None."""
        try:
            return wait_for(predicate, timeout, "a chaos condition", interval)
        except AssertionError:
            return None

    def wait_fanout_running(self, done_at_least: int = 1, timeout: float = 60) -> None:
        """Mid-stage: at least `done_at_least` fanout tasks completed and one running."""
        def mid() -> bool:
            return len(self.task_rows("completed")) >= done_at_least and bool(self.task_rows("processing"))
        assert self.wait(mid, timeout), "the fanout stage never got going"

    def measure(self, fault: str, fault_at: float) -> Result:
        result = Result(fault)
        final = self.wait(lambda: (s := self.statuses()) and all(v in TERMINAL for v in s.values()) and s,
                          self.bound_s, interval=0.2)
        if final:
            result.recovery_s = round(time.monotonic() - fault_at, 1)
        final = final or self.statuses()
        for kind, status in final.items():
            if status not in TERMINAL:
                result.stuck += 1
                result.notes.append(f"{kind} {status}")
            elif status != "completed" and fault != "disk_full":
                result.notes.append(f"{kind} {status}")
        for kind, job_id in self.jobs.items():
            if final.get(kind) != "completed" and not (fault == "disk_full" and kind == "raster"):
                result.lost += self.query("SELECT count(*) FROM tasks WHERE job_id = %s AND status <> 'completed'",
                                          job_id)[0][0] or 1
        if "fanout" in self.jobs:
            self._check_markers(result)
        if "vector" in self.jobs and final.get("vector") == "completed":
            rows = self.query(f"SELECT count(*) FROM geo.chaos_{self.tag}")[0][0]  # noqa: S608 - our own name
            if rows > FEATURES:
                result.duplicated += rows - FEATURES
                result.notes.append(f"vector: {rows} rows for {FEATURES} features")
            elif rows < FEATURES:
                result.lost += FEATURES - rows
        if "raster" in self.jobs and self.silver_bucket:
            self._check_bucket(result)
        elif "raster" in self.jobs:
            cogs = [p for p in (self.data / "silver").rglob(f"r-{self.tag}*.tif") if p.is_file()]
            partial = [p for p in (self.data / "silver").rglob("*") if p.is_file() and "tmp" in p.name.lower()]
            if len(cogs) > 1 or partial:
                result.duplicated += max(len(cogs) - 1, 0) + len(partial)
                result.notes.append(f"raster outputs {[p.name for p in cogs + partial]}")
        return result

    def _check_bucket(self, result: Result) -> None:
        """Exactly one COG of the raster job under its final key, nothing else of it in the bucket."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(self.silver_bucket, endpoint=S3_ENV["AWS_ENDPOINT_URL"], region=S3_ENV["AWS_REGION"],
                        access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"], secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
                        client_options={"allow_http": True})
        keys = [o["path"] for batch in obstore.list(store, prefix="silver/") for o in batch]
        cogs = [k for k in keys if f"r-{self.tag}" in k and k.endswith(".tif")]
        odd = [k for k in keys if "tmp" in k.lower() or "staging" in k.lower()]
        if len(cogs) != 1 or odd:
            result.duplicated += max(len(cogs) - 1, 0) + len(odd)
            result.lost += len(cogs) == 0
            result.notes.append(f"bucket holds {cogs + odd}")

    def _check_markers(self, result: Result) -> None:
        job_id = self.jobs["fanout"]
        attempts = dict(self.query("SELECT task_key, attempt FROM tasks WHERE job_id = %s", job_id))
        for key, attempt in attempts.items():
            path = self.markers / key
            lines = path.read_text().splitlines() if path.exists() else []
            runs = [line.split()[1] for line in lines]
            if not lines:
                result.lost += 1
            if len(set(runs)) != len(runs) or len(runs) > attempt:
                result.duplicated += 1
                result.notes.append(f"{key}: {len(runs)} runs in {attempt} attempts")
            result.reruns += max(len(runs) - 1, 0)
            result.retried += attempt > 1

    def close(self) -> None:
        stop(*self.workers)
        for cleanup in reversed(self.cleanups):
            cleanup()


# faults: each gets a started Drill (workers running, jobs submitted) and returns the monotonic time of the fault ---

def _kill_pid_of(app: str) -> bool:
    """SIGKILL the process named by an `executed_by_app` value; False when it is already gone."""
    try:
        os.kill(int(app.rsplit("#", 1)[1]), signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def fault_point_env(point: str, drill: Drill, task_type: str | None = "demo.work") -> None:
    drill.extra_env.update(GEOMILL_FAULT_POINT=point, GEOMILL_FAULT_ONCE=str(drill.root / f"fault-{point}"))
    if task_type:
        drill.extra_env["GEOMILL_FAULT_TASK_TYPE"] = task_type


def _wait_fault_fired(drill: Drill, point: str) -> float:
    assert drill.wait(lambda: (drill.root / f"fault-{point}").exists(), 60), f"fault point {point} never reached"
    return time.monotonic()


@dataclass
class Fault:
    name: str
    run: Callable[[Drill], float]
    prepare: Callable[[Drill], None] = lambda drill: None  # before the workers start
    broker: bool = False  # needs RabbitMQ
    proxy_db: bool = False  # workers reach PostgreSQL through a TcpProxy (drill.proxy)
    proxy_broker: bool = False
    proxy_storage: bool = False  # silver on S3, workers reach it through a TcpProxy (drill.proxy)
    kinds: tuple[str, ...] = ("raster", "vector", "fanout")
    fanout_n: int | None = None
    sleep_s: float | None = None
    workers: int = 1


def _point(name: str) -> tuple[Callable[[Drill], None], Callable[[Drill], float]]:
    task_type = None if name == "between_stage_chunks" else "demo.work"
    return (lambda d: fault_point_env(name, d, task_type)), (lambda d: _wait_fault_fired(d, name))


def _mid_task(drill: Drill) -> float:
    drill.wait_fanout_running()
    rows = drill.wait(lambda: drill.task_rows("processing"), 60, interval=0.02)
    assert rows, "no running fanout task to kill"
    assert _kill_pid_of(random.choice(rows)[1]), "the chosen worker process was already gone"
    return time.monotonic()


def _janitor_leader(drill: Drill) -> float:
    drill.wait_fanout_running()
    holder = drill.wait(lambda: drill.query("SELECT holder FROM leader_leases WHERE name = 'janitor'"), 20)
    assert holder, "no janitor leader"
    pid = int(holder[0][0].rsplit("#", 1)[1])
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the leader's supervisor and its worker processes: leases to heal
    return time.monotonic()


def _pg_restart(drill: Drill) -> float:
    drill.wait_fanout_running()
    at = time.monotonic()
    try:
        pg_ctl("stop")
        time.sleep(3)
    finally:
        pg_ctl("start")
        drill.wait(postgres_up, 60, interval=0.5)
    return at


def _rabbit_restart(drill: Drill) -> float:
    drill.wait_fanout_running()
    at = time.monotonic()
    try:
        assert rabbitmqctl("stop_app").returncode == 0
        time.sleep(2)
    finally:
        rabbitmqctl("start_app")
        wait_rabbitmq_app()
    return at


def _proxy_cut(seconds: float) -> Callable[[Drill], float]:
    def run(drill: Drill) -> float:
        drill.wait_fanout_running()
        proxy: TcpProxy = drill.proxy  # type: ignore[attr-defined]
        at = time.monotonic()
        proxy.cut()
        time.sleep(seconds)
        proxy.restore()
        return at
    return run


def _slow_db(drill: Drill) -> float:
    proxy: TcpProxy = drill.proxy  # type: ignore[attr-defined]
    drill.wait_fanout_running()
    at = time.monotonic()
    proxy.delay = 0.05  # every forwarded chunk 50 ms late
    time.sleep(3)
    proxy.cut()  # and the connections dropped once
    time.sleep(1)
    proxy.restore()
    time.sleep(2)
    proxy.delay = 0.0
    return at


def _flaky_storage(drill: Drill) -> float:
    """The object store unreachable (connections refused) as the workers start, until a raster task has failed an
    attempt on it, then slow (50 ms a chunk) with every connection dropped three times."""
    proxy: TcpProxy = drill.proxy  # type: ignore[attr-defined]
    at = time.monotonic()
    proxy.cut()
    hit = drill.wait(lambda: drill.query("SELECT count(*) FROM tasks WHERE job_id = %s AND error IS NOT NULL",
                                         drill.jobs["raster"])[0][0], 60, interval=0.2)
    if not hit:
        drill.notes.append("the raster job never met the outage")  # type: ignore[attr-defined]
    proxy.restore()
    proxy.delay = 0.05
    for _ in range(3):
        time.sleep(0.8)
        proxy.cut()
        time.sleep(0.2)
        proxy.restore()
    proxy.delay = 0.0
    attempts = drill.query("SELECT max(attempt) FROM tasks WHERE job_id = %s", drill.jobs["raster"])[0][0]
    drill.notes.append(f"raster attempts: {attempts}")  # type: ignore[attr-defined]
    return at


def _partitioned_host(drill: Drill) -> None:
    """A second worker supervisor on a host of its own (a network namespace, tests/netns.py) that reaches
    PostgreSQL only through its link; the drill's other worker runs in the root namespace."""
    from netns import Network

    net = Network(drill.root / "net")
    drill.cleanups.append(net.close)
    host = net.add_host("p")
    env = drill.env(for_worker=True, app_name="partitioned")
    env["GEOMILL_DATABASE_URL"] = env["GEOMILL_DATABASE_URL"].replace("127.0.0.1:5432", host.address("postgres"))
    drill.workers.append(host.start(env, drill.root / "worker-partitioned.log", "worker", "--processes", "2"))
    drill.host = host  # type: ignore[attr-defined]


def _partition(drill: Drill) -> float:
    """Pull the namespaced host's cable while it runs a fanout task, for three leases, then plug it back: its
    tasks go to the other worker; whatever it finishes meanwhile is refused (fenced) when it is back."""
    host = drill.host  # type: ignore[attr-defined]
    running = drill.wait(lambda: [r for r in drill.task_rows("processing") if r[1].startswith("partitioned")], 60)
    if not running:
        drill.notes.append("the partitioned host never ran a task")  # type: ignore[attr-defined]
    at = time.monotonic()
    host.link(False)
    time.sleep(3 * float(WORKER_SETTINGS["lease_seconds"]))  # type: ignore[arg-type]
    host.link(True)
    return at


def _disk_prepare(drill: Drill) -> None:
    drill.extra_env["GEOMILL_MIN_FREE_MB"] = "0"


FAULTS: dict[str, Fault] = {
    "kill_after_claim": Fault("kill_after_claim", _point("after_claim")[1], _point("after_claim")[0]),
    "kill_mid_task": Fault("kill_mid_task", _mid_task),
    "kill_before_complete": Fault("kill_before_complete", _point("before_complete")[1],
                                  _point("before_complete")[0]),
    "kill_planner_between_chunks": Fault("kill_planner_between_chunks", _point("between_stage_chunks")[1],
                                         _point("between_stage_chunks")[0], fanout_n=300, sleep_s=0.0),
    "kill_janitor_leader": Fault("kill_janitor_leader", _janitor_leader, workers=2),
    "postgres_restart": Fault("postgres_restart", _pg_restart),
    "rabbitmq_restart": Fault("rabbitmq_restart", _rabbit_restart, broker=True),
    "rabbitmq_unreachable": Fault("rabbitmq_unreachable", _proxy_cut(5), broker=True, proxy_broker=True),
    "postgres_slow_and_dropped": Fault("postgres_slow_and_dropped", _slow_db, proxy_db=True),
    "postgres_partition": Fault("postgres_partition", lambda d: _blackhole(d, 5), proxy_db=True),
    "worker_partitioned_netns": Fault("worker_partitioned_netns", _partition, _partitioned_host,
                                      kinds=("raster", "vector", "fanout")),
    "object_store_flaky": Fault("object_store_flaky", _flaky_storage, proxy_storage=True,
                                kinds=("raster", "fanout")),
}


def _blackhole(drill: Drill, seconds: float) -> float:
    proxy: TcpProxy = drill.proxy  # type: ignore[attr-defined]
    drill.wait_fanout_running()
    at = time.monotonic()
    proxy.blackhole()
    time.sleep(seconds)
    proxy.restore()
    return at


@contextmanager
def drill_for(fault: Fault, root: Path, pg_url: str, broker_url: str | None, *, n: int = 20,
              sleep_s: float = 0.2) -> Iterator[Drill]:
    """A Drill with its proxies, inputs and workers started (after the fault's prepare), stopped at exit."""
    with ExitStack() as stack:
        drill = Drill(root, pg_url, broker_url if fault.broker else None, n=fault.fanout_n or n,
                      sleep_s=sleep_s if fault.sleep_s is None else fault.sleep_s)
        if fault.proxy_db:
            proxy = TcpProxy("127.0.0.1", 5432)
            stack.callback(proxy.close)
            drill.proxy = proxy  # type: ignore[attr-defined]
            drill.worker_url = proxy.url(pg_url)
        if fault.proxy_broker and broker_url:
            proxy = TcpProxy("127.0.0.1", 5672)
            stack.callback(proxy.close)
            drill.proxy = proxy  # type: ignore[attr-defined]
            drill.worker_broker_url = proxy.url(broker_url)
        if fault.proxy_storage:
            ensure_s3()
            drill.silver_bucket = fresh_bucket("geomill-chaos")
            proxy = TcpProxy(S3_HOST, S3_PORT)
            stack.callback(proxy.close)
            drill.proxy = proxy  # type: ignore[attr-defined]
            drill.extra_env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
        drill.notes = []  # type: ignore[attr-defined]
        drill.inputs()
        fault.prepare(drill)
        stack.callback(drill.close)
        drill.submit(fault.kinds, n=drill.n)
        for _ in range(fault.workers):
            drill.start_worker(2)
        yield drill


def run_fault(fault: Fault, root: Path, pg_url: str, broker_url: str | None, *, n: int = 20,
              sleep_s: float = 0.2) -> Result:
    with drill_for(fault, root, pg_url, broker_url, n=n, sleep_s=sleep_s) as drill:
        fault_at = fault.run(drill)
        result = drill.measure(fault.name, fault_at)
        result.notes.extend(drill.notes)  # type: ignore[attr-defined]
        alive = [w.poll() is None for w in drill.workers]
        if fault.name not in ("kill_janitor_leader",) and not all(alive):
            result.notes.append("a worker supervisor died")
        return result


def run_disk_full(root: Path, pg_url: str, *, n: int = 10) -> Result:
    """The data folder on a small tmpfs, filled before the raster job runs. docs/rasters.md: `OutOfSpace` is never
    retried at once; by default (GEOMILL_OUT_OF_SPACE_RETRY_SECONDS=0) the task fails with it. Checked: the raster
    job fails, its error a clear OutOfSpace naming the folder (not retried, not lost), no COG appears under a final
    name, the worker survives and the fanout job (markers outside the full disk) completes. Needs root (small_disk
    skips, or fails under CI)."""
    from small_disk import fill, small_disk

    drill = Drill(root, pg_url, n=n, sleep_s=0.05, extra_env={"GEOMILL_MIN_FREE_MB": "0"})
    with small_disk(drill.data, "16m"):
        drill.inputs()
        fill(drill.data)
        try:
            drill.submit(("raster", "fanout"))
            drill.start_worker(2)
            at = time.monotonic()

            def failed() -> list[tuple[Any, ...]]:
                return drill.query(
                    "SELECT t.error::text, t.attempt FROM tasks t JOIN jobs j USING (job_id) WHERE t.job_id = %s"
                    " AND t.status = 'failed' AND j.status = 'failed'", drill.jobs["raster"])

            refused = drill.wait(failed, drill.bound_s, interval=0.2)
            raster_job = drill.jobs.pop("raster")
            result = drill.measure("disk_full", at)  # the fanout job
            drill.jobs["raster"] = raster_job
            if not refused:
                result.stuck += 1
                result.notes.append("raster job never failed")
            else:
                error, attempt = refused[0]
                if "OutOfSpace" not in error or "silver" not in error:
                    result.notes.append(f"raster error does not name a full disk: {error[:200]}")
                if attempt != 1:
                    result.notes.append(f"raster task took {attempt} attempts, expected 1 (not retried)")
                result.notes.append(f"raster failed at once: {json.loads(error).get('message', '')[:90]}")
            cogs = [p for p in (drill.data / "silver").rglob("*.tif") if p.is_file()]
            if cogs:
                result.duplicated += len(cogs)
                result.notes.append(f"partial output under a final name: {[p.name for p in cogs]}")
            if drill.workers[0].poll() is not None:
                result.notes.append("the worker died")
            return result
        finally:
            drill.close()
