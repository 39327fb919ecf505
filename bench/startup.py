"""Start-up cost of the CLI, as a user meets it (median of N fresh processes each):

- ``geomill --help``;
- ``geomill run hello_world``: process start to the job stored, and to its first task claimed (SQLite, local);
- ``geomill run process_raster`` on a missing input: process start to the process' exit (the job fails).

Usage: ``python bench/startup.py [-n 5] [--src path/to/src]`` (``--src`` measures another checkout, e.g. before
a change). Prints a small Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_SRC = Path(__file__).resolve().parents[1] / "src"


def _env(src: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    env.update(PYTHONPATH=str(src), GEOMILL_DATA_DIR=str(data_dir), GEOMILL_WORKERS="1", GEOMILL_LOG_LEVEL="ERROR")
    return env


def _geomill(env: dict[str, str], *args: str) -> tuple[float, float, int]:
    """(wall start as epoch seconds, seconds to exit, exit code) of one `geomill ...` process."""
    start_epoch, start = time.time(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "geomill.cli", *args], env=env, capture_output=True, text=True)
    return start_epoch, time.perf_counter() - start, proc.returncode


def help_seconds(src: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _geomill(_env(src, Path(tmp)), "--help")[1]


def hello_world(src: Path) -> tuple[float, float]:
    """(seconds to the job stored, seconds to the first task claimed), from the process' start."""
    with tempfile.TemporaryDirectory() as tmp:
        started, _, code = _geomill(_env(src, Path(tmp)), "run", "hello_world", "-p", "n=2", "--json")
        assert code == 0, f"geomill run hello_world exited {code}"
        con = sqlite3.connect(Path(tmp) / "geomill.db")
        try:
            stored = con.execute("SELECT min(created_at) FROM jobs").fetchone()[0]
            claimed = con.execute("SELECT min(execution_started_at) FROM tasks").fetchone()[0]
        finally:
            con.close()
        return stored - started, claimed - started


def missing_input_seconds(src: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        _, seconds, code = _geomill(_env(src, Path(tmp)), "run", "process_raster", "-p",
                                    "source=bronze://missing.tif", "--json")
        assert code != 0, "a missing input must fail"
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=5, help="fresh processes per measure (the median is shown)")
    parser.add_argument("--src", type=Path, default=REPO_SRC, help="the geomill source folder to measure")
    args = parser.parse_args()
    helps = [help_seconds(args.src) for _ in range(args.n)]
    hellos = [hello_world(args.src) for _ in range(args.n)]
    missing = [missing_input_seconds(args.src) for _ in range(args.n)]
    rows = [("`geomill --help`", statistics.median(helps)),
            ("`geomill run hello_world`: start to job stored", statistics.median(h[0] for h in hellos)),
            ("`geomill run hello_world`: start to first claim", statistics.median(h[1] for h in hellos)),
            ("`geomill run process_raster` (missing input): start to exit", statistics.median(missing))]
    print(f"source: {args.src.resolve()}, median of {args.n}\n")
    print("| measure | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
