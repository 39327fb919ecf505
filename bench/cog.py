#!/usr/bin/env python
"""Benchmark: geomill's ``process_raster`` job against GDAL's COG driver alone, on one large synthetic raster.

    .venv/bin/python bench/cog.py            # 2 GiB uint16 32768x32768 input, A B C A B C A B C
    .venv/bin/python bench/cog.py --quick    # ~256 MB input, one round, no BENCHMARKS.md update

(A) ``geomill run process_raster -p source=<file> --force --data-dir <fresh dir> --processes 1``: validate, COG, STAC.
(B) ``rasterio.shutil.copy(src, dst, driver="COG", **options)`` in a bare Python process, with the SAME creation
    options geomill uses by default for this input (read from geomill's own code, printed in the report), inside
    ``rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=512)`` as in BENCHMARKING.md; geomill runs with its
    default real 64 MiB cache.
(C) the same with ``GDAL_CACHEMAX=536870912``: rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, in
    BYTES, so (B) really runs with a 512-byte block cache; (C) shows what a real 512 MiB cache changes.

All run with GDAL_NUM_THREADS=ALL_CPUS, each under ``/usr/bin/time -v`` (wall time, peak
RSS of the largest process in the tree); a sampler also records the peak SUM of RSS over the whole process tree
(geomill runs a CLI process plus a spawned worker). The input is cached under bench/out/ (gitignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import rio_cogeo
from rasterio.transform import from_origin
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from common import busy_cpu_seconds, update_section  # bench/ is on sys.path when a script runs

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
SECTION = "## COG creation (bench/cog.py)"

BLOCK = 512
CRS = "EPSG:32618"
ORIGIN = (300_000.0, 4_600_000.0)  # UTM 18N, New York state; 10 m pixels
PIXEL = 10.0
INPUT_VERSION = "1"  # bump when the generator changes, so cached inputs are rebuilt
GDAL_CACHE_MB = 512
GEOMILL_CACHE_MB = 64  # geomill's default GEOMILL_GDAL_CACHE_MB (MiB, converted to bytes by geomill's gdal_env)
THREADS = "ALL_CPUS"
TIME_BIN = "/usr/bin/time"
TARGET_TIME_RATIO = 1.10
TARGET_RSS_MB = 512
SYSTEMS = {
    "geomill": "geomill process_raster",
    "gdal": f"GDAL COG driver alone (GDAL_CACHEMAX={GDAL_CACHE_MB}, reference settings)",
    "gdal-mib": "GDAL COG driver alone (512 MiB cache)",
}

GDAL_ALONE = """
import json, sys, rasterio, rasterio.shutil
src, dst, cache_mb, threads, options = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
with rasterio.Env(GDAL_NUM_THREADS=threads, GDAL_CACHEMAX=cache_mb):
    rasterio.shutil.copy(src, dst, driver="COG", **options)
"""


# ---------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=2048, help="input size, square, uint16 (default 2048)")
    p.add_argument("--width", type=int, help="input width in pixels (with --height; overrides --size-mb)")
    p.add_argument("--height", type=int, help="input height in pixels")
    p.add_argument("--quick", action="store_true", help="~256 MB input, --repeat 1, no BENCHMARKS.md update")
    p.add_argument("--repeat", type=int, help="A B pairs (default 3; 1 with --quick)")
    p.add_argument("--seed", type=int, default=20261123, help="seed of the synthetic texture")
    p.add_argument("--write-md", action=argparse.BooleanOptionalAction, default=None,
                   help="update the section in BENCHMARKS.md (default: yes, except with --quick)")
    p.add_argument("--mib-cache-run", action=argparse.BooleanOptionalAction, default=True,
                   help="also run GDAL alone with a real 512 MiB block cache (default: yes)")
    p.add_argument("--keep", action="store_true", help="keep the output COGs and data dirs under bench/out/runs/")
    args = p.parse_args(argv)
    if args.quick and args.width is None:
        args.size_mb = 256
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.write_md = (not args.quick) if args.write_md is None else args.write_md
    return args


def input_shape(args: argparse.Namespace) -> tuple[int, int]:
    """(width, height): explicit, or the square of whole 512 blocks nearest to --size-mb of uint16."""
    if args.width or args.height:
        if not (args.width and args.height):
            sys.exit("give both --width and --height")
        return args.width, args.height
    side = math.sqrt(args.size_mb * 2**20 / 2)
    side = max(BLOCK, round(side / BLOCK) * BLOCK)
    return side, side


# ---------------------------------------------------------------- input


def input_path(width: int, height: int) -> Path:
    return OUT / f"synthetic-u16-{width}x{height}-tiled{BLOCK}.tif"


def cached_input_ok(path: Path, width: int, height: int, seed: int) -> bool:
    """An earlier run's input, complete (written under a temporary name, renamed last) and made the same way."""
    if not path.is_file():
        return False
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
            return (ds.width, ds.height, ds.dtypes[0], ds.block_shapes[0]) == (width, height, "uint16", (BLOCK, BLOCK)) \
                and tags.get("BENCH_INPUT_VERSION") == INPUT_VERSION and tags.get("BENCH_SEED") == str(seed)
    except rasterio.errors.RasterioError:
        return False


def synthetic_block(row: int, col: int, h: int, w: int, seed: int) -> np.ndarray:
    """Smooth landscape (large waves + a tilt) plus per-block texture: a parcel offset and noise of varying strength."""
    y = (row + np.arange(h, dtype=np.float32))[:, None]
    x = (col + np.arange(w, dtype=np.float32))[None, :]
    smooth = 20000 + 9000 * np.sin(x / 2900.0) * np.cos(y / 2300.0) + 2500 * np.sin((x + y) / 610.0) + 0.1 * x
    rng = np.random.default_rng([seed, row // BLOCK, col // BLOCK])
    offset = rng.integers(-800, 800)
    sigma = rng.choice([4.0, 15.0, 60.0])
    texture = rng.normal(0.0, sigma, size=(h, w)).astype(np.float32)
    return np.clip(smooth + offset + texture, 0, 65535).astype(np.uint16)


def generate_input(path: Path, width: int, height: int, seed: int) -> None:
    """Write the tiled, uncompressed GeoTIFF one 512x512 block at a time (memory: a few MB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint16", crs=CRS,
                   transform=from_origin(*ORIGIN, PIXEL, PIXEL), tiled=True, blockxsize=BLOCK, blockysize=BLOCK,
                   compress="none", BIGTIFF="IF_SAFER")
    started, step = time.perf_counter(), max(1, height // BLOCK // 10)
    print(f"  generating {path.name} ...", flush=True)
    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(tmp, "w", **profile) as dst:
        for i, row in enumerate(range(0, height, BLOCK), 1):
            for col in range(0, width, BLOCK):
                h, w = min(BLOCK, height - row), min(BLOCK, width - col)
                dst.write(synthetic_block(row, col, h, w, seed), 1, window=Window(col, row, w, h))
            if i % step == 0:
                print(f"    {100 * min(row + BLOCK, height) / height:3.0f}%  {time.perf_counter() - started:.0f} s", flush=True)
        dst.update_tags(BENCH_INPUT_VERSION=INPUT_VERSION, BENCH_SEED=str(seed))
    os.replace(tmp, path)
    print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)


def ensure_input(width: int, height: int, seed: int) -> Path:
    path = input_path(width, height)
    if cached_input_ok(path, width, height, seed):
        print(f"  reusing cached input {path}")
    else:
        generate_input(path, width, height, seed)
    return path


def warm_page_cache(path: Path) -> None:
    """Read the input once so the first timed run does not pay for the disk and later ones not."""
    with open(path, "rb") as f:
        while f.read(16 * 2**20):
            pass


# ---------------------------------------------------------------- fair options


def geomill_default_options(src: Path) -> dict[str, str]:
    """The creation options geomill's raster.create_cog resolves for `src` with no parameters (from its code)."""
    from geomill.tasks.raster import cog

    with rasterio.open(src) as ds:
        resampling = "nearest" if cog.has_colormap(ds) else "average"
    plan = cog.CogPlan(source=str(src), compression=cog.DEFAULT_COMPRESSION, resampling=resampling, dst_crs=None,
                       fingerprint="", uri="", path=src)
    return cog.creation_options(plan, THREADS)


def check_geomill_settings() -> None:
    """Fail loudly if the settings this benchmark sets through the environment were renamed."""
    from geomill.config import Settings

    missing = {"gdal_cache_mb", "gdal_threads"} - set(Settings.model_fields)
    if missing:
        sys.exit(f"geomill Settings no longer has {missing}: update the GEOMILL_* variables in bench/cog.py")


# ---------------------------------------------------------------- measuring


@dataclass
class Run:
    system: str
    wall_s: float
    max_rss_mb: float  # /usr/bin/time: the largest single process of the tree
    tree_rss_mb: float  # sampled: the largest sum of RSS over the tree
    cpu_pct: float
    output: Path
    others_cores: float = 0.0  # CPU used by OTHER processes on the machine during the run, in cores
    size_bytes: int = 0
    valid: bool = False
    cog_errors: list[str] = field(default_factory=list)
    breakdown: dict[str, float] = field(default_factory=dict)


class TreeRssSampler(threading.Thread):
    """Polls /proc for the sum of VmRSS of a process and all its descendants; keeps the peak."""

    def __init__(self, root_pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.interval, self.peak_kb = root_pid, interval, 0
        self._halt = threading.Event()

    @staticmethod
    def _parents() -> dict[int, int]:
        parents = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        return parents

    def _tree_rss_kb(self) -> int:
        parents, tree = self._parents(), {self.root_pid}
        for _ in range(8):  # a few passes reach grandchildren whatever the scan order
            tree |= {pid for pid, ppid in parents.items() if ppid in tree}
        total = 0
        for pid in tree:
            try:
                m = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
                total += int(m.group(1)) if m else 0
            except OSError:
                continue
        return total

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak_kb = max(self.peak_kb, self._tree_rss_kb())

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return self.peak_kb / 1024


def parse_time_v(text: str) -> tuple[float, float, float]:
    """(max RSS MB, CPU %, CPU seconds) from GNU time -v output."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", text)
    cpu_s = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    if not rss:
        raise RuntimeError(f"cannot parse /usr/bin/time -v output:\n{text}")
    return int(rss.group(1)) / 1024, float(cpu.group(1)) if cpu else float("nan"), cpu_s


@dataclass
class Measurement:
    wall_s: float
    max_rss_mb: float
    tree_rss_mb: float
    cpu_pct: float
    others_cores: float
    stdout: str


def measured(cmd: list[str], env: dict[str, str], workdir: Path) -> Measurement:
    """Run `cmd` under /usr/bin/time -v; raises if it fails."""
    time_file = workdir / "time-v.txt"
    os.sync()  # start each run with no dirty pages from the previous one
    busy_before = busy_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen([TIME_BIN, "-v", "-o", str(time_file), *cmd], env=env, cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeRssSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    tree_mb = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-4000:]}\n{stdout[-2000:]}")
    busy = busy_cpu_seconds() - busy_before
    rss_mb, cpu, cpu_s = parse_time_v(time_file.read_text())
    return Measurement(wall, rss_mb, tree_mb, cpu, max(0.0, busy - cpu_s) / wall, stdout)


def geomill_cmd(src: Path, data_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("geomill")
    return [str(exe), "run", "process_raster", "-p", f"source={src}", "--force",
            "--data-dir", str(data_dir), "--processes", "1", "--json"]


def geomill_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOMILL_", "GDAL_"))}
    env.update(GEOMILL_GDAL_CACHE_MB=str(GEOMILL_CACHE_MB), GEOMILL_GDAL_THREADS=THREADS)
    return env


def geomill_breakdown(data_dir: Path, launched_at: float, exited_at: float) -> dict[str, float]:
    """Where geomill's wall time went, from the timestamps in its SQLite database."""
    con = sqlite3.connect(f"file:{data_dir / 'geomill.db'}?mode=ro", uri=True)
    try:
        job_created, job_finished = con.execute("SELECT created_at, finished_at FROM jobs").fetchone()
        tasks = con.execute("SELECT task_type, execution_started_at, finished_at FROM tasks ORDER BY stage").fetchall()
    finally:
        con.close()
    parts = {"start-up (CLI, DB, submit)": job_created - launched_at}
    for task_type, started, finished in tasks:
        parts[task_type] = finished - started
    parts["worker spawn + scheduling between tasks"] = (job_finished - job_created) - sum(f - s for _, s, f in tasks)
    parts["shut-down (pool, report)"] = exited_at - job_finished
    return parts


def run_geomill(src: Path, runs_dir: Path) -> Run:
    workdir = Path(tempfile.mkdtemp(prefix="geomill-", dir=runs_dir))
    data_dir = workdir / "data"  # fresh each run, so the job and its COG really are made again
    launched = time.time()
    m = measured(geomill_cmd(src, data_dir), geomill_env(), workdir)
    report = json.loads(m.stdout)
    if report.get("status") != "completed":
        raise RuntimeError(f"geomill job ended {report.get('status')}: {json.dumps(report)[:2000]}")
    output = Path(report["result"]["outputs"][0]["cog_path"])
    run = Run(SYSTEMS["geomill"], m.wall_s, m.max_rss_mb, m.tree_rss_mb, m.cpu_pct, output, m.others_cores)
    run.breakdown = geomill_breakdown(data_dir, launched, launched + m.wall_s)
    return run


def run_gdal(src: Path, runs_dir: Path, options: dict[str, str], system: str, cache_value: int) -> Run:
    workdir = Path(tempfile.mkdtemp(prefix="gdal-", dir=runs_dir))
    output = workdir / "out.tif"
    cmd = [sys.executable, "-c", GDAL_ALONE, str(src), str(output), str(cache_value), THREADS, json.dumps(options)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOMILL_", "GDAL_"))}
    m = measured(cmd, env, workdir)
    return Run(system, m.wall_s, m.max_rss_mb, m.tree_rss_mb, m.cpu_pct, output, m.others_cores)


def effective_cache_bytes(value: int) -> int | None:
    """GDAL's block cache size after ``rasterio.Env(GDAL_CACHEMAX=value)``, asked from rasterio's own libgdal."""
    import ctypes
    import glob

    libs = glob.glob(str(Path(rasterio.__file__).parent.parent / "rasterio.libs" / "libgdal*"))
    if not libs:
        return None
    lib = ctypes.CDLL(libs[0])  # already loaded by rasterio: the same handle, the same cache
    lib.GDALGetCacheMax64.restype = ctypes.c_int64
    with rasterio.Env(GDAL_CACHEMAX=value):
        return lib.GDALGetCacheMax64()


# ---------------------------------------------------------------- checking outputs


def layout(path: Path) -> dict[str, object]:
    """What must match between the two outputs for the comparison to be fair."""
    with rasterio.open(path) as ds:
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        factors = ds.overviews(1)
        with rasterio.open(path, overview_level=len(factors) - 1) as smallest:
            checksum = smallest.checksum(1)
        return {"compression": structure.get("COMPRESSION"), "predictor": structure.get("PREDICTOR"),
                "layout": structure.get("LAYOUT"), "block": ds.block_shapes[0], "overviews": factors,
                "smallest overview checksum": checksum}


def check_output(run: Run) -> dict[str, object]:
    run.size_bytes = run.output.stat().st_size
    valid, errors, _warnings = cog_validate(str(run.output), quiet=True)
    run.valid, run.cog_errors = bool(valid and not errors), list(errors)
    return layout(run.output)


def cleanup(run: Run, runs_dir: Path, keep: bool) -> None:
    if keep:
        return
    top = run.output
    while top.parent != runs_dir:
        top = top.parent
    shutil.rmtree(top, ignore_errors=True)


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"nproc": str(os.cpu_count()), "memory": f"{mem_kb / 2**20:.1f} GiB", "cpu": cpu,
            "kernel": platform.release()}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"GDAL (rasterio's bundled)": rasterio.__gdal_version__, "rasterio": rasterio.__version__,
            "rio-cogeo": rio_cogeo.__version__, "numpy": np.__version__, "Python": platform.python_version(),
            "geomill": f"{version('geomill')} (git {commit})"}


def median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def fmt_size(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def results_table(runs: dict[str, list[Run]]) -> list[str]:
    rows = ["| system | median wall (s) | median peak RSS, largest process (MB) | median peak RSS, whole tree (MB) "
            "| CPU | output size | cog_validate |", "|---|---|---|---|---|---|---|"]
    for key, label in SYSTEMS.items():
        rs = runs.get(key)
        if rs:
            rows.append(f"| {label} | {median(rs, 'wall_s'):.1f} | {median(rs, 'max_rss_mb'):.0f} "
                        f"| {median(rs, 'tree_rss_mb'):.0f} | {median(rs, 'cpu_pct'):.0f}% "
                        f"| {fmt_size(median(rs, 'size_bytes'))} | {'valid' if all(r.valid for r in rs) else 'INVALID'} |")
    a = runs["geomill"]
    for key in ("gdal", "gdal-mib"):
        if runs.get(key):
            b, bold = runs[key], "**" if key == "gdal" else ""
            rows.append(f"| {bold}ratio geomill / {SYSTEMS[key]}{bold} "
                        f"| {bold}{median(a, 'wall_s') / median(b, 'wall_s'):.2f}×{bold} "
                        f"| {bold}{median(a, 'max_rss_mb') / median(b, 'max_rss_mb'):.2f}×{bold} "
                        f"| {median(a, 'tree_rss_mb') / median(b, 'tree_rss_mb'):.2f}× | "
                        f"| {median(a, 'size_bytes') / median(b, 'size_bytes'):.3f}× | |")
    return rows


def raw_runs(runs: dict[str, list[Run]]) -> list[str]:
    lines = []
    for i in range(len(runs["geomill"])):
        parts = [f"{key} {rs[i].wall_s:.1f} s / {rs[i].max_rss_mb:.0f} MB (tree {rs[i].tree_rss_mb:.0f} MB, "
                 f"other processes {rs[i].others_cores:.2f} cores)" for key, rs in runs.items() if rs]
        lines.append(f"- round {i + 1}: " + "; ".join(parts))
    return lines


def breakdown_lines(runs: dict[str, list[Run]]) -> list[str]:
    a = runs["geomill"]
    total = median(a, "wall_s")
    lines = ["| part of the geomill run | median s | share of wall |", "|---|---|---|"]
    for key in a[0].breakdown:
        value = statistics.median(r.breakdown.get(key, 0.0) for r in a)
        lines.append(f"| {key} | {value:.2f} | {100 * value / total:.0f}% |")
    return lines


def targets(runs: dict[str, list[Run]]) -> list[str]:
    a, b = runs["geomill"], runs["gdal"]
    ratio = median(a, "wall_s") / median(b, "wall_s")
    rss = median(a, "max_rss_mb")
    return [f"- geomill within {TARGET_TIME_RATIO:.2f}× of GDAL alone (reference settings), wall: {ratio:.2f}× — "
            f"**{'met' if ratio <= TARGET_TIME_RATIO else 'NOT met'}**",
            f"- geomill peak RSS (largest process) under {TARGET_RSS_MB} MB: {rss:.0f} MB — "
            f"**{'met' if rss < TARGET_RSS_MB else 'NOT met'}** (whole tree: {median(a, 'tree_rss_mb'):.0f} MB)"]


def reproduce_command(args: argparse.Namespace) -> str:
    cmd = "cd /work/main && .venv/bin/python bench/cog.py"
    if args.quick:
        cmd += " --quick"
    elif args.width:
        cmd += f" --width {args.width} --height {args.height}"
    elif args.size_mb != 2048:
        cmd += f" --size-mb {args.size_mb:g}"
    if args.repeat != (1 if args.quick else 3):
        cmd += f" --repeat {args.repeat}"
    if not args.mib_cache_run:
        cmd += " --no-mib-cache-run"
    return cmd


def cache_note() -> str:
    ref, mib = effective_cache_bytes(GDAL_CACHE_MB), effective_cache_bytes(GDAL_CACHE_MB * 2**20)
    return (f"- GDAL block cache actually in force (`GDALGetCacheMax64()` of rasterio's libgdal): "
            f"`rasterio.Env(GDAL_CACHEMAX={GDAL_CACHE_MB})` → **{ref} bytes**; "
            f"`rasterio.Env(GDAL_CACHEMAX={GDAL_CACHE_MB * 2**20})` → {mib} bytes. rasterio passes an integer "
            "GDAL_CACHEMAX to GDALSetCacheMax64, i.e. in BYTES (GDAL's own MB rule for values < 100000 applies only "
            "to the config option/environment variable), so the reference GDAL run works with an effectively empty "
            f"block cache. geomill converts its MiB setting to bytes and runs with a real {GEOMILL_CACHE_MB} MiB "
            "cache (its default). The third row runs GDAL alone with a real 512 MiB cache.")


def render_section(args, src: Path, shape: tuple[int, int], options: dict[str, str], layouts: dict[str, dict],
                   runs: dict[str, list[Run]]) -> str:
    w, h = shape
    m, v = machine(), versions()
    same = all(lay == layouts["geomill"] for lay in layouts.values())
    lines = [
        SECTION, "",
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `bench/cog.py`: {args.repeat} round(s) run "
        "alternately (geomill, GDAL, GDAL 512 MiB, geomill, …), medians reported; this machine drifts 15–20% "
        "between passes, so compare only figures from one run.", "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Input: synthetic uint16, {w}×{h}, 1 band, {fmt_size(src.stat().st_size)} uncompressed GeoTIFF, tiled "
        f"{BLOCK}×{BLOCK}, {CRS}, {PIXEL:g} m pixels, smooth waves + per-block seeded texture (seed {args.seed}); "
        "in the page cache for every run (read once before timing; `sync` before each run). The COG is "
        f"{100 * median(runs['gdal'], 'size_bytes') / src.stat().st_size:.0f}% of the input's size, so DEFLATE has "
        "real work to do. BENCHMARKING.md's 26.5 s reference does not say what its input held, so compare only "
        "within this table.",
        f"- geomill: `geomill run process_raster -p source=<input> --force --data-dir <fresh dir> --processes 1 "
        f"--json` with GEOMILL_GDAL_CACHE_MB={GEOMILL_CACHE_MB} (its default) GEOMILL_GDAL_THREADS={THREADS} (validate → create_cog "
        "→ STAC item, SQLite state, one spawned worker process).",
        f"- GDAL alone: `rasterio.shutil.copy(src, dst, driver=\"COG\", **options)` inside "
        f"`rasterio.Env(GDAL_NUM_THREADS=\"{THREADS}\", GDAL_CACHEMAX=<n>)` in a bare Python process; n = "
        f"{GDAL_CACHE_MB} as in BENCHMARKING.md (reference settings), and n = "
        f"{GDAL_CACHE_MB * 2**20} (a real 512 MiB cache).",
        cache_note(),
        "- COG creation options, identical for all (geomill's defaults for this input, read from "
        "`geomill.tasks.raster.cog.creation_options`): `" + ", ".join(f"{k}={val}" for k, val in options.items()) + "`",
        f"- Outputs have the same structure (compression, predictor, layout, block size, overview factors, checksum "
        f"of the smallest overview): **{'yes' if same else 'NO'}**" + ("" if same else f" — {layouts}"),
        "- Peak RSS: `/usr/bin/time -v` \"Maximum resident set size\" is the largest single process of the tree "
        "(not a sum); \"whole tree\" is the peak of the summed RSS of all processes, sampled every 0.2 s.", "",
        *results_table(runs), "",
        "Runs (\"other processes\": CPU used by the rest of the machine during the run, from /proc/stat; other "
        "work on this shared machine slows whichever run it overlaps):", *raw_runs(runs), "",
        "Where geomill's time goes (timestamps from its SQLite database; raster.create_cog includes writing the COG "
        "to a temporary file, `cog_validate` of it, the rename, and a second `cog_validate` when describing it):", "",
        *breakdown_lines(runs), "",
        "Targets:", *targets(runs), "",
        "Reproduce:", "", "```", reproduce_command(args), "```", "",
    ]
    return "\n".join(lines)



def update_benchmarks_md(section: str) -> None:
    update_section(SECTION, section)


def print_summary(runs: dict[str, list[Run]], options: dict[str, str]) -> None:
    print("\ncreation options (all):", ", ".join(f"{k}={v}" for k, v in options.items()))
    print(cache_note())
    for block in (results_table(runs), raw_runs(runs), breakdown_lines(runs), targets(runs)):
        print("\n".join(block))


# ---------------------------------------------------------------- main


def require_time() -> None:
    if not Path(TIME_BIN).exists():
        sys.exit(f"{TIME_BIN} is missing: it is GNU time, Debian package `time` (apt-get install -y time)")


def runners(args: argparse.Namespace, src: Path, runs_dir: Path, options: dict[str, str]) -> dict:
    """One callable per system, in the order they alternate."""
    chosen = {
        "geomill": lambda: run_geomill(src, runs_dir),
        "gdal": lambda: run_gdal(src, runs_dir, options, SYSTEMS["gdal"], GDAL_CACHE_MB),
        "gdal-mib": lambda: run_gdal(src, runs_dir, options, SYSTEMS["gdal-mib"], GDAL_CACHE_MB * 2**20),
    }
    if not args.mib_cache_run:
        del chosen["gdal-mib"]
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_time()
    check_geomill_settings()
    shape = input_shape(args)
    print(f"input: {shape[0]}x{shape[1]} uint16 ({shape[0] * shape[1] * 2 / 2**20:,.0f} MB)")
    src = ensure_input(*shape, args.seed)
    warm_page_cache(src)
    options = geomill_default_options(src)
    print("COG options (geomill defaults, used for GDAL alone too):", options)
    runs_dir = OUT / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    systems = runners(args, src, runs_dir, options)
    runs: dict[str, list[Run]] = {key: [] for key in systems}
    layouts: dict[str, dict] = {}
    for i in range(1, args.repeat + 1):
        for key, runner in systems.items():
            run = runner()
            layouts[key] = check_output(run)
            runs[key].append(run)
            print(f"  round {i} {key:8s} {run.wall_s:7.1f} s  max RSS {run.max_rss_mb:6.0f} MB  tree "
                  f"{run.tree_rss_mb:6.0f} MB  CPU {run.cpu_pct:4.0f}%  others {run.others_cores:.2f} cores  "
                  f"{fmt_size(run.size_bytes)}  "
                  f"{'valid COG' if run.valid else 'INVALID: ' + '; '.join(run.cog_errors)}", flush=True)
            cleanup(run, runs_dir, args.keep)
    print_summary(runs, options)
    if args.write_md:
        update_benchmarks_md(render_section(args, src, shape, options, layouts, runs))
        print(f"\nupdated {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
