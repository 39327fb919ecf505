"""Issue 19: how long ``geomill run process_raster`` takes, end to end, to refuse a bad input (exit 2, the job's
error an InvalidInput naming the file): process start to exit, median of N fresh processes per input.

Inputs, generated with GDAL (through rasterio) in a temporary folder: a GeoTIFF without CRS, a netCDF container of
2 subdatasets (0 bands of its own), a complex64 GeoTIFF, a netCDF variable of 4 dimensions, a missing file
(refused at submit, before any job is stored). A valid 64 x 64 GeoTIFF is measured beside them as the baseline
of a run that completes.

Usage: ``python bench/time_to_fail.py [-n 5] [--no-write]`` prints a Markdown table and puts it in BENCHMARKS.md
under "## Issue 19: time to fail a bad input".
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from common import publish  # noqa: E402
from raster_inputs import netcdf_classic, netcdf_four_dimensions, write_tif  # noqa: E402

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
HEADING = "## Issue 19: time to fail a bad input"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    env.update(PYTHONPATH=str(REPO_SRC), GEOMILL_DATA_DIR=str(data_dir), GEOMILL_WORKERS="1",
               GEOMILL_LOG_LEVEL="ERROR")
    return env


def run_seconds(source: Path, *extra: str) -> tuple[float, int, str]:
    """(seconds from process start to exit, exit code, last stdout/stderr line) of one fresh ``geomill run``."""
    with tempfile.TemporaryDirectory() as data:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "geomill.cli", "run", "process_raster", "-p",
                               f"source={source}", *extra], env=_env(Path(data)), capture_output=True, text=True)
        seconds = time.perf_counter() - start
    said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return seconds, proc.returncode, said[-1] if said else ""


def inputs(folder: Path) -> list[tuple[str, Callable[[], Path], int]]:
    """(name, maker, expected exit code)."""
    ones = np.ones((1, 64, 64), "uint8")
    return [
        ("valid 64x64 GeoTIFF (baseline: completes)", lambda: write_tif(folder / "ok.tif", ones), 0),
        ("no CRS", lambda: write_tif(folder / "nocrs.tif", ones, crs=None), 2),
        ("netCDF container, 2 subdatasets, 0 bands", lambda: netcdf_classic(folder / "two.nc"), 2),
        ("complex64 data", lambda: write_tif(folder / "sar.tif", np.ones((1, 64, 64), "complex64")), 2),
        ("netCDF variable of 4 dimensions", lambda: netcdf_four_dimensions(folder / "cube.nc", folder), 2),
        ("missing file (refused at submit)", lambda: folder / "missing.tif", 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5, help="fresh processes per input (the median is shown)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, expected in inputs(Path(tmp)):
            source = make()
            runs = [run_seconds(source) for _ in range(args.n)]
            codes = {code for _, code, _ in runs}
            assert codes == {expected}, f"{name}: exit codes {codes}, expected {expected}: {runs[-1][2]}"
            times = [s for s, _, _ in runs]
            rows.append((name, expected, statistics.median(times), min(times), max(times)))
    lines = [
        HEADING, "",
        f"`python bench/time_to_fail.py -n {args.n}`: `geomill run process_raster -p source=…` from process start "
        "to exit (SQLite, 1 worker, a fresh data folder per run), median of "
        f"{args.n} fresh processes; {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, GDAL {rasterio.__gdal_version__}.", "",
        "| input | exit code | median s | min s | max s |", "|---|---|---|---|---|",
        *(f"| {name} | {code} | {med:.2f} | {lo:.2f} | {hi:.2f} |" for name, code, med, lo, hi in rows), "",
        "Every bad input fails on its first attempt (InvalidInput, never retried): the time is the CLI's start-up, "
        "the job's storage, one `raster.validate` task (GDAL's import and open) and the exit. A missing file never "
        "reaches a worker (refused at submit).", "",
    ]
    publish(HEADING, "\n".join(lines), not args.no_write)


if __name__ == "__main__":
    main()
