#!/usr/bin/env python
"""Benchmark (issue 18): a raster → COG with its input and output on local disk, on S3 (moto) and on Azure Blob
(Azurite), side by side; and how fast, in how much memory, geomill lists a prefix of many objects.

    .venv/bin/python bench/storage.py                     # small: 64 MiB input, 3 rounds, listing 10,000 / 20,000
    .venv/bin/python bench/storage.py --size-mib 1024 --list-counts 10000 100000   # the issue's form (quiet machine)

COG: each round runs, in turn for local, s3 and az, ``geomill run process_raster -p source=bronze://<input>
--force --data-dir <fresh dir> --processes 1 --json`` with GEOMILL_BRONZE_URL/GEOMILL_SILVER_URL pointing at a folder,
an S3 bucket prefix or an Azure container prefix (a fresh silver prefix per run, so nothing is reused), under
``/usr/bin/time -v`` (wall, peak RSS of the largest process: the worker) with a sampler of the process tree's summed
RSS and of the local disk used by the data folder and by its ``.staging`` scratch folder. Every COG must validate
(read back in place through /vsis3/ or /vsiaz/). Medians over the rounds, and each backend's ratio to local.

Listing: N tiny objects under one prefix per backend (a folder of files locally); a fresh Python process lists it
with ``ObjectStorage.list`` (batches of 1,000) and reports objects/s and its peak RSS (``ru_maxrss``) against its
RSS before listing: constant memory means the peak does not grow from the small N to the large one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from rio_cogeo.cogeo import cog_validate

from cog import OUT, ensure_input, machine, measured, require_time, versions, warm_page_cache  # bench/ on sys.path
from common import publish

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # services.py: the emulators' addresses and start-up
SECTION = "## Object storage: COG local vs S3 vs Azure, listing (bench/storage.py)"
BACKENDS = ("local", "s3", "az")
LABELS = {"local": "local → local", "s3": "s3 → s3 (moto)", "az": "az → az (Azurite)"}
BLOCK = 512
SEED = 20261123
GEOMILL_CACHE_MB = 64
TARGET_RATIO = 1.3
TARGET_LIST_GROWTH = 1.10  # peak RSS listing the large N within 10% of the small N's
AZURE_PAGE = 5000  # keys per Azure List Blobs page (S3: 1,000): a listing holds up to two pages (one read ahead)

LISTER = """
import json, sys, time
from pathlib import Path
from geomill.storage import ObjectStorage
def status_mb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) / 1024
storage = ObjectStorage(Path(sys.argv[1]), {"silver": sys.argv[2]} if sys.argv[2] != "local" else None)
next(iter(storage.list("silver://warm-up/")), None)  # imports and the client, before the baseline
with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS (VmHWM) to the current RSS
    f.write("5")
before, started, n = status_mb("VmRSS"), time.perf_counter(), 0
for batch in storage.list("silver://" + sys.argv[3]):
    n += len(batch)
seconds = time.perf_counter() - started
print(json.dumps({"n": n, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": status_mb("VmHWM")}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=float, default=64, help="input size, square uint16 (default 64; the issue: 1024)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of local, s3, az (medians reported; default 3)")
    p.add_argument("--list-counts", type=int, nargs="+", default=[10000, 20000],
                   help="objects to list, per backend (default 10000 20000; the issue: 10000 100000); constant memory "
                        "is judged between the two largest, which should both be at least two Azure pages (10,000)")
    p.add_argument("--list-repeat", type=int, default=3, help="listing runs per backend and count (default 3)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--parts", nargs="+", choices=("cog", "list"), default=["cog", "list"])
    p.add_argument("--azurite", choices=("private", "shared"), default="private",
                   help="private (default): an Azurite of this run's own, in memory, on a free loopback port (the "
                        "shared one persists to a JSON database that slows down with every blob: 100,000 take hours); "
                        "shared: the one on 127.0.0.1:10000")
    p.add_argument("--write-md", action=argparse.BooleanOptionalAction, default=True,
                   help="put the section into BENCHMARKS.md (default: yes)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- backends


AZURE = {"conn": ""}  # the Azurite connection string in use (shared or private)


def cloud_env(backend: str) -> dict[str, str]:
    """The emulator's credentials (started if down): moto's AWS_* or Azurite's connection string."""
    import services

    if backend == "local":
        return {}
    if backend == "az" and AZURE["conn"]:
        return {"AZURE_STORAGE_CONNECTION_STRING": AZURE["conn"]}
    try:
        env = services.ensure_s3() if backend == "s3" else services.ensure_azurite()
    except BaseException as exc:  # services skips (pytest) when it cannot start one: say so and stop
        sys.exit(f"{backend}: emulator unavailable: {exc}")
    if backend == "az":
        AZURE["conn"] = env["AZURE_STORAGE_CONNECTION_STRING"]
    return env


@contextmanager
def private_azurite(workdir: Path) -> Iterator[None]:
    """An in-memory Azurite of this run on a free loopback port (its connection string into AZURE), stopped after."""
    import socket

    import services

    workdir.mkdir(parents=True, exist_ok=True)
    binary = services.CACHE / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        cloud_env("az")  # installs it (and starts the shared one)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                             "--silent", "--skipApiVersionCheck", "--loose"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        if not services._wait_port("127.0.0.1", port, 30):
            sys.exit("the private Azurite did not come up")
        shared = services.AZURITE_ENDPOINT
        AZURE["conn"] = services.AZURITE_CONNECTION_STRING.replace(shared, shared.replace(
            f":{services.AZURITE_PORT}/", f":{port}/"))
        yield
    finally:
        proc.terminate()
        proc.wait(30)
        AZURE["conn"] = ""


def make_bucket(backend: str, root: Path) -> str:
    """A fresh bucket or container (or a folder), its base URI."""
    import services

    if backend == "local":
        root.mkdir(parents=True, exist_ok=True)
        return str(root)
    if backend == "s3":
        return f"s3://{services.fresh_bucket('bench-storage')}"
    from azure.storage.blob import BlobServiceClient

    name = f"bench-storage-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(AZURE["conn"]).create_container(name)
    return f"az://{name}"


def drop_bucket(backend: str, base: str) -> None:
    """Delete the bucket/container with everything in it (the emulators keep them otherwise)."""
    import services

    if backend == "local":
        shutil.rmtree(base, ignore_errors=True)
        return
    name = base.split("://", 1)[1]
    if backend == "az":
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(AZURE["conn"]).delete_container(name)
        return
    import boto3

    env = services.S3_ENV
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=name)


def storage_for(base: str, env: dict[str, str], root: Path):  # type: ignore[no-untyped-def]
    from geomill.storage import ObjectStorage

    return ObjectStorage(root, {"silver": base + "/"} if "://" in base else None, env=env)


# ---------------------------------------------------------------- disk sampler


def disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk under `folder` (st_blocks), now."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


class DiskSampler(threading.Thread):
    """The peak disk use of the data folder and of its .staging folder, sampled every 0.1 s."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(daemon=True)
        self.data_dir, self.peak_data, self.peak_staging = data_dir, 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            self.peak_data = max(self.peak_data, disk_bytes(self.data_dir))
            self.peak_staging = max(self.peak_staging, disk_bytes(self.data_dir / ".staging"))

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---------------------------------------------------------------- COG runs


@dataclass
class CogRun:
    backend: str
    wall_s: float
    max_rss_mb: float
    tree_rss_mb: float
    peak_data_mb: float
    peak_staging_mb: float
    cog_mb: float
    valid: bool
    others_cores: float


def run_cog(backend: str, base: str, env: dict[str, str], source: str, runs_dir: Path, n: int) -> CogRun:
    workdir = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=runs_dir))
    data = workdir / "data"
    data.mkdir()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GEOMILL_", "GDAL_", "AWS_", "AZURE_"))}
    full.update(env, GEOMILL_GDAL_CACHE_MB=str(GEOMILL_CACHE_MB), GEOMILL_GDAL_THREADS="ALL_CPUS",
                GEOMILL_LOG_LEVEL="WARNING")
    if backend != "local":
        full.update(GEOMILL_BRONZE_URL=f"{base}/bronze/", GEOMILL_SILVER_URL=f"{base}/run-{n}/silver/")
    cmd = [str(Path(sys.executable).with_name("geomill")), "run", "process_raster", "-p", f"source={source}",
           "--force", "--data-dir", str(data), "--processes", "1", "--json"]
    disk = DiskSampler(data)
    disk.start()
    try:
        m = measured(cmd, full, workdir)
    finally:
        disk.stop()
    report = json.loads(m.stdout)
    if report.get("status") != "completed":
        raise RuntimeError(f"{backend}: job ended {report.get('status')}: {json.dumps(report)[:2000]}")
    [out] = report["result"]["outputs"]
    if out.get("reused"):
        raise RuntimeError(f"{backend}: the COG was reused, not made: {out}")
    storage = storage_for(base if backend != "local" else str(data), env, workdir / "check")
    where = out["cog_path"]
    gdal_name = storage.gdal_path(where)
    valid, errors, _ = cog_validate(gdal_name, quiet=True)
    size = storage.stat(where).size
    if backend != "local":  # the run's objects go; the source stays for the next round
        for batch in storage.list(f"{base}/run-{n}/"):
            for obj in batch:
                storage.delete(obj.uri)
    shutil.rmtree(workdir, ignore_errors=True)
    return CogRun(backend, m.wall_s, m.max_rss_mb, m.tree_rss_mb, disk.peak_data / 2**20,
                  disk.peak_staging / 2**20, size / 2**20, bool(valid and not errors), m.others_cores)


def cog_part(args: argparse.Namespace, runs_dir: Path) -> tuple[dict[str, list[CogRun]], Path]:
    side = max(BLOCK, round(math.sqrt(args.size_mib * 2**20 / 2) / BLOCK) * BLOCK)
    print(f"input: {side}x{side} uint16 ({side * side * 2 / 2**20:,.0f} MiB)", flush=True)
    src = ensure_input(side, side, SEED)
    warm_page_cache(src)
    places: dict[str, tuple[str, dict[str, str], str]] = {}
    for backend in args.backends:
        env = cloud_env(backend)
        if backend == "local":
            places[backend] = ("", env, str(src))
            continue
        base = make_bucket(backend, runs_dir)
        storage_for(base, env, runs_dir / "upload").put_file(src, f"{base}/bronze/{src.name}")
        places[backend] = (base, env, f"bronze://{src.name}")
    runs: dict[str, list[CogRun]] = {b: [] for b in args.backends}
    try:
        for i in range(1, args.repeat + 1):
            for backend in args.backends:
                base, env, source = places[backend]
                run = run_cog(backend, base, env, source, runs_dir, i)
                runs[backend].append(run)
                print(f"  round {i} {backend:5s} {run.wall_s:6.1f} s  RSS {run.max_rss_mb:5.0f} MB (tree "
                      f"{run.tree_rss_mb:5.0f})  disk {run.peak_data_mb:6.0f} MB (staging {run.peak_staging_mb:5.0f})"
                      f"  COG {run.cog_mb:6.1f} MB {'valid' if run.valid else 'INVALID'}  others "
                      f"{run.others_cores:.2f} cores", flush=True)
    finally:
        for backend, (base, _, _) in places.items():
            if base:
                drop_bucket(backend, base)
    return runs, src


# ---------------------------------------------------------------- listing


@dataclass
class ListRun:
    backend: str
    n: int
    seconds: float
    rss_before_mb: float
    peak_rss_mb: float


def populate(backend: str, base: str, env: dict[str, str], n: int, root: Path) -> float:
    """N one-byte objects under list/<n>/ (threads for the clouds); seconds taken."""
    started = time.perf_counter()
    if backend == "local":
        folder = Path(base) / "silver" / "list" / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"obj-{i:07d}").write_bytes(b"x")
    else:
        storage = storage_for(base, env, root)
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: storage.write_bytes(f"silver://list/{n}/obj-{i:07d}", b"x"), range(n)))
    return time.perf_counter() - started


def list_once(backend: str, base: str, env: dict[str, str], n: int, scratch: Path) -> ListRun:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
    full.update(env, PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p))
    root = base if backend == "local" else str(scratch)
    silver = "local" if backend == "local" else f"{base}/"
    done = subprocess.run([sys.executable, "-c", LISTER, root, silver, f"list/{n}/"], env=full,
                          capture_output=True, text=True, check=True)
    doc = json.loads(done.stdout)
    if doc["n"] != n:
        raise RuntimeError(f"{backend}: listed {doc['n']} objects, expected {n}")
    return ListRun(backend, n, doc["seconds"], doc["rss_before_mb"], doc["peak_rss_mb"])


def list_part(args: argparse.Namespace, runs_dir: Path) -> dict[tuple[str, int], list[ListRun]]:
    runs: dict[tuple[str, int], list[ListRun]] = {}
    for backend in args.backends:
        env = cloud_env(backend)
        base = make_bucket(backend, runs_dir / f"list-{uuid.uuid4().hex[:8]}")
        try:
            for n in args.list_counts:
                took = populate(backend, base, env, n, runs_dir / "populate")
                print(f"  {backend:5s} {n:>8,} objects written in {took:.0f} s", flush=True)
                runs[(backend, n)] = [list_once(backend, base, env, n, runs_dir / "lister")
                                      for _ in range(args.list_repeat)]
                r = runs[(backend, n)]
                print(f"  {backend:5s} {n:>8,} listed: " + ", ".join(
                    f"{x.n / x.seconds:,.0f}/s peak {x.peak_rss_mb:.0f} MB" for x in r), flush=True)
        finally:
            drop_bucket(backend, base)
    return runs


# ---------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values)


def cog_table(runs: dict[str, list[CogRun]]) -> list[str]:
    rows = ["| input → output | median wall (s) | × local | peak RSS, largest process (MB) | peak RSS, whole tree (MB) "
            "| peak local disk: data folder (MB) | of which .staging (MB) | COG (MB) | cog_validate "
            "| other load (cores) |", "|---|---|---|---|---|---|---|---|---|---|"]
    local = med([r.wall_s for r in runs["local"]]) if runs.get("local") else None
    for backend, rs in runs.items():
        wall = med([r.wall_s for r in rs])
        ratio = f"{wall / local:.2f}×" if local else "—"
        rows.append(f"| {LABELS[backend]} | {wall:.1f} | {ratio} | {med([r.max_rss_mb for r in rs]):.0f} "
                    f"| {med([r.tree_rss_mb for r in rs]):.0f} | {med([r.peak_data_mb for r in rs]):.0f} "
                    f"| {med([r.peak_staging_mb for r in rs]):.0f} | {med([r.cog_mb for r in rs]):.1f} "
                    f"| {'valid' if all(r.valid for r in rs) else 'INVALID'} "
                    f"| {', '.join(f'{r.others_cores:.2f}' for r in rs)} |")
    return rows


def list_table(runs: dict[tuple[str, int], list[ListRun]]) -> list[str]:
    rows = ["| backend | objects | median s | objects/s | RSS before listing (MB) | peak RSS (MB) | peak − before (MB) |",
            "|---|---|---|---|---|---|---|"]
    for (backend, n), rs in runs.items():
        s = med([r.seconds for r in rs])
        before, peak = med([r.rss_before_mb for r in rs]), med([r.peak_rss_mb for r in rs])
        rows.append(f"| {backend} | {n:,} | {s:.2f} | {n / s:,.0f} | {before:.0f} | {peak:.0f} | {peak - before:.1f} |")
    return rows


def targets(cog: dict[str, list[CogRun]], lists: dict[tuple[str, int], list[ListRun]],
            counts: list[int]) -> list[str]:
    lines = []
    if cog.get("local"):
        local = med([r.wall_s for r in cog["local"]])
        for backend in ("s3", "az"):
            if cog.get(backend):
                ratio = med([r.wall_s for r in cog[backend]]) / local
                lines.append(f"- {LABELS[backend]} within {TARGET_RATIO}× of local (wall): {ratio:.2f}× — "
                             f"**{'met' if ratio <= TARGET_RATIO else 'NOT met'}**")
    if len(counts) >= 2:
        small, large = sorted(set(counts))[-2:]
        for backend in BACKENDS:
            if (backend, small) in lists and (backend, large) in lists:
                a = med([r.peak_rss_mb for r in lists[(backend, small)]])
                b = med([r.peak_rss_mb for r in lists[(backend, large)]])
                verdict = "met" if b / a <= TARGET_LIST_GROWTH else "NOT met"
                if small < 2 * AZURE_PAGE:
                    verdict += f"; not conclusive: {small:,} objects is less than two Azure pages of {AZURE_PAGE:,}"
                lines.append(f"- {backend} listing in constant memory: peak RSS {a:.0f} MB at {small:,} objects, "
                             f"{b:.0f} MB at {large:,} ({b / a:.2f}×) — **{verdict}**")
    return lines


def render(args: argparse.Namespace, src: Path | None, cog: dict[str, list[CogRun]],
           lists: dict[tuple[str, int], list[ListRun]], load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    m, v = machine(), versions()
    small = args.size_mib < 1024 or max(args.list_counts) < 100_000
    from importlib.metadata import version

    cmd = f"cd /work/main && .venv/bin/python bench/storage.py --size-mib {args.size_mib:g} --repeat {args.repeat} " \
          f"--list-counts {' '.join(map(str, args.list_counts))} --azurite {args.azurite}"
    lines = [
        SECTION, "",
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `bench/storage.py`"
        + (" — **small-size run on a shared, busy machine: the figures are noisy and not the issue's 1 GiB / "
           "100,000-object form**" if small else "") + ".", "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}; load average "
        f"(1/5/15 min) at start {' '.join(f'{x:.1f}' for x in load[0])}, at end "
        f"{' '.join(f'{x:.1f}' for x in load[1])}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f", obstore {version('obstore')}, "
        f"moto {version('moto')} (server mode, loopback), Azurite {azurite_version()} (loopback, "
        f"{'a private one in memory' if args.azurite == 'private' else 'the shared one, persisted to disk'})",
    ]
    if src is not None:
        lines += [
            f"- COG: input {src.name} ({src.stat().st_size / 2**20:,.0f} MiB uncompressed, bench/cog.py's generator), "
            f"{args.repeat} round(s) of local, s3, az in turn, medians. `geomill run process_raster -p source=… "
            f"--force --data-dir <fresh> --processes 1 --json`, GEOMILL_GDAL_CACHE_MB={GEOMILL_CACHE_MB}, "
            "GEOMILL_GDAL_THREADS=ALL_CPUS; remote runs download the source to `.staging` first (one streamed GET: "
            "sources up to GEOMILL_STAGE_SOURCE_MAX_MB, default 2048 MiB; docs/storage.md), write the COG to "
            "`.staging` and upload it (multipart). Peak RSS: `/usr/bin/time -v` (largest process: the "
            "worker) and the sampled sum over the process tree; local disk: the data folder (SQLite, static "
            "catalog, and, for local → local, the COG itself) and `.staging`, sampled every 0.1 s. Other load: "
            "CPU used by the rest of the machine during each run.", "",
            *cog_table(cog), "",
            "Runs, wall s in round order: " + "; ".join(
                f"{backend} {', '.join(f'{r.wall_s:.1f}' for r in rs)}" for backend, rs in cog.items()), "",
        ]
    if lists:
        lines += [
            f"- Listing: N one-byte objects under one prefix; a fresh process runs `ObjectStorage.list` (batches of "
            f"1,000), {args.list_repeat} run(s) each, medians; peak RSS is the process's VmHWM, reset "
            "(`/proc/self/clear_refs`) after imports and a first (empty) listing, when its RSS is the baseline.", "",
            *list_table(lists), "",
        ]
    lines += ["Targets (issue 18):", *targets(cog, lists, args.list_counts), "", "Reproduce:", "", "```", cmd, "```",
              ""]
    return "\n".join(lines)


def azurite_version() -> str:
    package = Path.home() / ".cache" / "geomill" / "azurite" / "node_modules" / "azurite" / "package.json"
    try:
        return json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_time()
    load_start = os.getloadavg()
    runs_dir = OUT / "storage-runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    cog: dict[str, list[CogRun]] = {}
    lists: dict[tuple[str, int], list[ListRun]] = {}
    src = None
    private = args.azurite == "private" and "az" in args.backends
    try:
        with private_azurite(runs_dir / "azurite") if private else nullcontext():
            if "cog" in args.parts:
                cog, src = cog_part(args, runs_dir)
            if "list" in args.parts:
                lists = list_part(args, runs_dir)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    publish(SECTION, render(args, src, cog, lists, (load_start, os.getloadavg())), args.write_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
