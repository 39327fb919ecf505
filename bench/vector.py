#!/usr/bin/env python
"""Benchmark: loading generated polygons from a GeoPackage into PostGIS, three ways, side by side in one run.

    .venv/bin/python bench/vector.py                      # 1,000,000 and 5,000,000 polygons
    .venv/bin/python bench/vector.py --sizes 100000       # quick; --no-write-md to leave BENCHMARKS.md alone

(A) geomill ``process_vector`` on PostgreSQL, run by ``geomill worker --processes 2`` (started before the submit,
    as a running service is; pgSTAC installed beforehand by ``geomill db upgrade``): prepare (read, make_valid
    check, GeoParquet chunks of 100,000 rows) -> parallel COPY of the chunks -> primary key, GiST index, ANALYZE,
    catalog row, STAC item. Timed from the submit to the job's end.
(B) ``ogr2ogr -f PostgreSQL --config PG_USE_COPY YES`` (GDAL's defaults: a serial primary key, a GiST index).
    When ogr2ogr is missing it is installed with ``apt-get install -y gdal-bin``; its version is printed.
(C) ``geopandas.read_file(engine="pyogrio", use_arrow=True)`` then ``GeoDataFrame.to_postgis`` (COPY through
    psycopg 3), then a GiST index (to_postgis makes none) — the common notebook way.

Each system loads into its own fresh database. Peak RSS is per process, the largest over the process tree (each
process's VmHWM, polled every 0.1 s; the PostgreSQL server's backends are not counted for anyone). Inputs are
cached under bench/out/vector/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg

from common import PG_ADMIN_URL, pg_create_db, pg_drop_db, update_section

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out" / "vector"
SECTION = "## Vector loading into PostGIS (bench/vector.py)"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
INPUT_VERSION = "1"

GEOPANDAS = """
import sys, geopandas, sqlalchemy
src, url, table = sys.argv[1], sys.argv[2], sys.argv[3]
gdf = geopandas.read_file(src, engine="pyogrio", use_arrow=True)
engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
gdf.to_postgis(table, engine, if_exists="fail", index=False)
with engine.begin() as con:
    con.exec_driver_sql(f'CREATE INDEX ON "{table}" USING gist (geometry)')
print(len(gdf))
"""


@dataclass
class Run:
    system: str
    rows: int
    seconds: float
    peak_rss_mb: float
    loaded: int
    note: str = ""
    runs: int = 1  # how many runs this row is the median of
    load: str = ""  # /proc/loadavg when the size's runs started

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- input


def polygons_gpkg(n: int, seed: int = 20261123) -> Path:
    """`n` random small polygons (5-9 vertices, EPSG:3857) with int, float and text attributes; cached."""
    path = OUT / f"polygons-{n}-v{INPUT_VERSION}.gpkg"
    if path.is_file():
        return path
    import pyarrow as pa
    import pyogrio
    import shapely

    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".partial-" + path.name)
    tmp.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    batch = 250_000
    for start in range(0, n, batch):
        k = min(batch, n - start)
        cx, cy = rng.uniform(-2e7, 2e7, k), rng.uniform(-1e7, 1e7, k)
        sides = 7
        angles = np.sort(rng.uniform(0, 2 * np.pi, (k, sides)), axis=1)
        radius = rng.uniform(50, 500, (k, 1))
        xs, ys = cx[:, None] + radius * np.cos(angles), cy[:, None] + radius * np.sin(angles)
        ring = np.stack([np.concatenate([xs, xs[:, :1]], 1), np.concatenate([ys, ys[:, :1]], 1)], axis=2)
        geoms = shapely.polygons(ring)
        table = pa.table({"code": pa.array(np.arange(start, start + k)), "area": pa.array(radius[:, 0] ** 2 * 3),
                          "kind": pa.array(np.array(["field", "forest", "water", "urban"])[np.arange(k) % 4]),
                          "geom": pa.array(shapely.to_wkb(geoms), type=pa.binary())})
        pyogrio.write_arrow(table, str(tmp), layer="polygons", driver="GPKG", geometry_name="geom",
                            geometry_type="Polygon", crs="EPSG:3857", append=start > 0)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- measuring


class PeakRss(threading.Thread):
    """The largest VmHWM (peak RSS) of any process in the tree under `root_pid`, polled until stopped."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.interval, self.peak_kb = root_pid, interval, 0
        self._halt = threading.Event()

    def _tree(self) -> set[int]:
        parents = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        tree = {self.root_pid}
        for _ in range(8):
            tree |= {pid for pid, ppid in parents.items() if ppid in tree}
        return tree

    def sample(self) -> None:
        for pid in self._tree():
            try:
                m = re.search(r"^VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
            except OSError:
                continue
            if m:
                self.peak_kb = max(self.peak_kb, int(m.group(1)))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> float:
        self.sample()
        self._halt.set()
        self.join(5)
        return self.peak_kb / 1024


def db_url(db: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ---------------------------------------------------------------- systems


def run_geomill(src: Path, n: int, workers: int, chunk_rows: int, keep: bool) -> Run:
    db = pg_create_db("bench_vector_geomill")
    url = db_url(db)
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"geomill-bench-vector-{db}"
    (data / "bronze").mkdir(parents=True)
    os.link(src, data / "bronze" / src.name) if src.stat().st_dev == data.stat().st_dev else shutil.copy(
        src, data / "bronze" / src.name)
    env = dict(os.environ, GEOMILL_DATA_DIR=str(data), GEOMILL_DATABASE_URL=url, GEOMILL_PREFETCH="1",
               GEOMILL_VECTOR_CHUNK_ROWS=str(chunk_rows), GEOMILL_LOG_LEVEL="WARNING")
    cli = [PYTHON, "-m", "geomill.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen([*cli, "worker", "--processes", str(workers)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    sampler = PeakRss(worker.pid)
    sampler.start()
    try:
        time.sleep(3)  # the workers are up, as in a running service
        started = time.perf_counter()
        job_id = subprocess.run([*cli, "submit", "process_vector", "-p", f"source=bronze://{src.name}",
                                 "-p", "table=polygons"], env=env, check=True, capture_output=True,
                                text=True).stdout.strip()
        with psycopg.connect(url, autocommit=True) as con:
            while True:
                status = con.execute("SELECT status FROM jobs WHERE job_id = %s", (job_id,)).fetchone()[0]
                if status not in ("queued", "processing"):
                    break
                time.sleep(0.1)
        seconds = time.perf_counter() - started
        peak = sampler.stop()
        note = "" if status == "completed" else f"job {status}"
        loaded = count(url, "geo.polygons") if status == "completed" else 0
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(60)
        if not keep:
            shutil.rmtree(data, ignore_errors=True)
            pg_drop_db(db)
    return Run("geomill", n, seconds, peak, loaded, note)


def ensure_ogr2ogr() -> str:
    """The ogr2ogr to use (installed from Debian's gdal-bin when missing); returns its version line."""
    if shutil.which("ogr2ogr") is None:
        print("ogr2ogr not found: apt-get update && apt-get install -y gdal-bin", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "gdal-bin"], check=True, env=env)
    return subprocess.run(["ogr2ogr", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def timed_process(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakRss(proc.pid, interval=0.05)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {err[-2000:]}")
    return seconds, peak, out


def run_ogr2ogr(src: Path, n: int, keep: bool) -> Run:
    db = pg_create_db("bench_vector_ogr")
    url = db_url(db)
    try:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        seconds, peak, _ = timed_process([
            "ogr2ogr", "-f", "PostgreSQL", f"PG:host=127.0.0.1 port=5432 user=postgres dbname={db}", str(src),
            "-nln", "polygons", "-lco", "GEOMETRY_NAME=geom", "--config", "PG_USE_COPY", "YES"])
        loaded = count(url, "polygons")
    finally:
        if not keep:
            pg_drop_db(db)
    return Run("ogr2ogr", n, seconds, peak, loaded)


def run_geopandas(src: Path, n: int, keep: bool) -> Run:
    db = pg_create_db("bench_vector_gpd")
    url = db_url(db)
    try:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        seconds, peak, _ = timed_process([PYTHON, "-c", GEOPANDAS, str(src), url, "polygons"])
        loaded = count(url, "polygons")
    finally:
        if not keep:
            pg_drop_db(db)
    return Run("geopandas.to_postgis", n, seconds, peak, loaded)


# ---------------------------------------------------------------- report


def median_run(runs: list[Run]) -> Run:
    """The median wall time of repeated runs of one system and size; peak RSS is the largest seen."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    mid = ordered[len(ordered) // 2]
    notes = sorted({r.note for r in runs if r.note})
    return Run(mid.system, mid.rows, statistics.median(r.seconds for r in runs), max(r.peak_rss_mb for r in runs),
               min(r.loaded for r in runs), "; ".join(notes), len(runs), runs[0].load)


def store_results(runs: list[Run]) -> list[Run]:
    """Results are kept per size in bench/out/vector/results.json, so a later run of one size keeps the others."""
    path = OUT / "results.json"
    saved = [Run(**r) for r in json.loads(path.read_text())] if path.exists() else []
    sizes = {r.rows for r in runs}
    merged = [r for r in saved if r.rows not in sizes] + runs
    path.write_text(json.dumps([asdict(r) for r in merged], indent=1))
    return merged


def table(runs: list[Run]) -> str:
    lines = ["| polygons | system | runs | wall s (median) | rows/s | peak RSS MB (largest process) | loaded | "
             "vs ogr2ogr | load avg at start |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for n in sorted({r.rows for r in runs}):
        ogr = next((r for r in runs if r.rows == n and r.system == "ogr2ogr"), None)
        for r in (r for r in runs if r.rows == n):
            ratio = ""
            if ogr and r.seconds:
                ratio = f"{ogr.seconds / r.seconds:.2f}x faster" if r.seconds <= ogr.seconds else \
                    f"{r.seconds / ogr.seconds:.2f}x slower"
            if r is ogr:
                ratio = "1.00"
            lines.append(f"| {n:,} | {r.system}{' (' + r.note + ')' if r.note else ''} | {r.runs} | "
                         f"{r.seconds:.1f} | {r.rows_per_second:,.0f} | {r.peak_rss_mb:.0f} | {r.loaded:,} | "
                         f"{ratio} | {r.load} |")
    return "\n".join(lines)


def section(runs: list[Run], gdal: str, args: argparse.Namespace) -> str:
    return f"""{SECTION}

Generated polygons (7 vertices, EPSG:3857, 3 attributes) in a GeoPackage, loaded into PostGIS on this machine
({platform.machine()}, {os.cpu_count()} cores; PostgreSQL on the same machine), by
`.venv/bin/python bench/vector.py --sizes <n> --repeat <k>`: for each size the systems run in turn, k rounds,
each into a fresh database; the table shows the median wall time (each size's latest invocation is kept).
geomill: `process_vector` run by `geomill worker --processes {args.workers}` (chunks of {args.chunk_rows:,} rows),
timed from the submit to the job's end (prepare + parallel COPY + PK, GiST, ANALYZE, catalog row, STAC item).
ogr2ogr: {gdal}, `-f PostgreSQL --config PG_USE_COPY YES` (serial PK + GiST index by default).
geopandas: `read_file(engine="pyogrio", use_arrow=True)` + `to_postgis` + a GiST index.
Peak RSS: the largest single process of each system's process tree (PostgreSQL's own backends not counted).
Other work shared this 2-core machine during the runs (see the load averages), so times vary run to run.

{table(runs)}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000], help="polygon counts")
    p.add_argument("--workers", type=int, default=2, help="geomill worker processes (default 2)")
    p.add_argument("--chunk-rows", type=int, default=100_000, help="geomill GEOMILL_VECTOR_CHUNK_ROWS")
    p.add_argument("--systems", nargs="+", default=["geomill", "ogr2ogr", "geopandas"])
    p.add_argument("--repeat", type=int, default=1, help="rounds per size (median reported)")
    p.add_argument("--write-md", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--keep", action="store_true", help="keep the databases and data folders")
    return p.parse_args(argv)


def run_system(system: str, src: Path, n: int, args: argparse.Namespace) -> Run:
    if system == "geomill":
        return run_geomill(src, n, args.workers, args.chunk_rows, args.keep)
    if system == "ogr2ogr":
        return run_ogr2ogr(src, n, args.keep)
    return run_geopandas(src, n, args.keep)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    gdal = ensure_ogr2ogr() if "ogr2ogr" in args.systems else "not run"
    print(f"ogr2ogr: {gdal}", flush=True)
    results: list[Run] = []
    for n in args.sizes:
        src = polygons_gpkg(n)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"{n:,} polygons: {src} ({src.stat().st_size / 2**20:.0f} MB), load average {load}", flush=True)
        rounds: dict[str, list[Run]] = {s: [] for s in args.systems}
        for _ in range(args.repeat):
            for system in args.systems:
                run = run_system(system, src, n, args)
                run.load = load
                print(f"  {run.system:22s} {run.seconds:8.1f} s {run.rows_per_second:12,.0f} rows/s "
                      f"{run.peak_rss_mb:8.0f} MB  loaded {run.loaded:,} {run.note}", flush=True)
                rounds[system].append(run)
        results += [median_run(r) for r in rounds.values()]
    print()
    print(table(results))
    if args.write_md:
        update_section(SECTION, section(store_results(results), gdal, args))


if __name__ == "__main__":
    main()
