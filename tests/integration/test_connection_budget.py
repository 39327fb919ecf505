"""The per-process connection budget under vector loads (PostGIS sink) and pgSTAC items (catalog): a worker process
holds at most GEOMILL_DB_POOL_SIZE + 1 LISTEN + the resource pool (runtime.RESOURCE_POOL_SIZE), as the README says.

Connections are attributed to OS processes by their TCP client port (pg_stat_activity.client_port matched against
the sockets in /proc/<pid>/fd), so the check holds whatever application_name a library sets."""

from __future__ import annotations

import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

import samples
from geomill.runtime import RESOURCE_POOL_SIZE
from procs import geomill_env, start_worker, stop, submit, wait_terminal
from services import ADMIN_URL
from vector_helpers import copy_samples

pytestmark = [pytest.mark.usefixtures("postgres_server"),
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")]
POOL = 1


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (the worker's supervisor and its worker processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def _port_owners(pids: list[int]) -> dict[int, int]:
    """Local TCP port -> pid, for the sockets those processes hold."""
    inode_pid = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = str(fd.readlink()) if fd.is_symlink() else ""
                if target.startswith("socket:["):
                    inode_pid[target[8:-1]] = pid
        except OSError:
            continue
    owners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inode_pid:
                owners[int(cols[1].rsplit(":", 1)[1], 16)] = inode_pid[cols[9]]
    return owners


def _sample(admin: psycopg.Connection, db: str, pgid: int) -> dict[int, list[str]]:
    """pid -> application names of its connections to `db`, now."""
    owners = _port_owners(_group(pgid))
    rows = admin.execute("SELECT client_port, application_name FROM pg_stat_activity WHERE datname = %s "
                         "AND client_port IS NOT NULL", (db,)).fetchall()
    held: dict[int, list[str]] = defaultdict(list)
    for port, app in rows:
        if port in owners:
            held[owners[port]].append(app)
    return held


def _submit_load(env: dict[str, str], raster: Path) -> list[str]:
    jobs = [submit(env, "process_vector", source="bronze://coutwildrnp.shp", chunk_rows=1000, table="wild")]
    jobs += [submit(env, "process_vector", source=f"bronze://{name}") for name in ("grenada.geojson",
                                                                                  "rmnp.geojson")]
    jobs += [submit(env, "process_raster", source=f"bronze://{raster.name}")]
    return jobs


def test_a_worker_process_stays_within_pool_listen_and_resource_pool(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "d"
    (data / "bronze").mkdir(parents=True)
    copy_samples(data / "bronze")
    raster = Path(shutil.copy(samples.EXAMPLES / "RGB.byte.tif", data / "bronze" / "rgb.tif"))
    env = geomill_env(data, pg_url, db_pool_size=POOL, janitor_interval_seconds=1)
    jobs = _submit_load(env, raster)
    worker = start_worker(env, 2)
    peak: dict[int, int] = defaultdict(int)
    resource_seen, done = [0], threading.Event()

    def watch() -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            while not done.is_set():
                for pid, apps in _sample(admin, pg_url.rsplit("/", 1)[1], worker.pid).items():
                    peak[pid] = max(peak[pid], len(apps))
                    resource_seen[0] += sum(app.endswith(":resources") or app == "pgstac" for app in apps)
                time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        docs = [wait_terminal(env, job_id, timeout=300) for job_id in jobs]
    finally:
        done.set()
        watcher.join()
        stop(worker)
    assert [d["status"] for d in docs] == ["completed"] * len(jobs), docs
    budget = POOL + 1 + RESOURCE_POOL_SIZE
    assert peak and max(peak.values()) <= budget, f"connections per process {dict(peak)}, budget {budget}"
    assert resource_seen[0] > 0  # the sink / catalog connections were there to be counted
