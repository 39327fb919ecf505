#!/usr/bin/env python
"""Drive hardbyte/postgresql-job-queue-benchmarking's own orchestrator (`bench run`) on this machine, without
Docker: its adapters are launched as native subprocesses and its Postgres is the local one.

The harness's code is not part of geomill: it is cloned next to it (README.md beside this file) and put on
sys.path with --harness. Only three things are changed, at run time, in its `adapters`/`orchestrator` modules:

- the database: postgres://postgres@127.0.0.1:5432/<db> (trust) instead of its Compose container on 15555;
- start/stop of Postgres: no-ops (run with --fast, so the harness never restarts it; it recreates each system's
  database instead);
- procrastinate, pgmq: its own `<system>-bench/main.py`, run by --peer-python (a venv with procrastinate 3.8.1 and
  psycopg 3.3.3, the versions its pyproject pins) instead of inside `docker run`; geomill: geomill_adapter.py
  beside this file, run by --geomill-python with PYTHONPATH=--geomill-src.

Everything else (stdin ENQUEUE pacing, descriptor drift check, metrics daemon, phases, raw.csv, summary.json) is the
harness's. Usage (the harness's own options follow `--`):

    /tmp/pgqvenv/bin/python bench/queue_harness/run_harness.py --harness /tmp/pgqbench -- \\
        --systems procrastinate,pgmq,geomill --fast --skip-build --producer-rate 50 --worker-count 8 \\
        --phase warmup=warmup:15s --phase clean=clean:45s --sample-every 5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PG_URL = "postgres://postgres@127.0.0.1:5432/{db}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--harness", type=Path, required=True, help="work tree of the harness (its git clone)")
    parser.add_argument("--peer-python", default=sys.executable, help="python with procrastinate + psycopg")
    parser.add_argument("--geomill-python", default="/work/main/.venv/bin/python")
    parser.add_argument("--geomill-src", default=str(HERE.parent.parent / "src"))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="-- then `bench run` options")
    args = parser.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest

    sys.path.insert(0, str(args.harness))
    from bench_harness import adapters, orchestrator  # type: ignore[import-not-found]

    def pg_url(dbname: str, host: str = "localhost") -> str:
        return PG_URL.format(db=dbname)

    adapters.pg_url = orchestrator.pg_url = pg_url
    orchestrator.start_postgres = orchestrator.stop_postgres = lambda _image: None

    def native(argv: list[str], cwd: str, extra: dict[str, str] | None = None):
        def launch(manifest, overrides):
            env = adapters._base_env(manifest, overrides)
            env["DATABASE_URL"] = pg_url(manifest.db_name)
            env.update(extra or {})
            return adapters.LaunchSpec(argv=argv, env=env, cwd=cwd)
        return launch

    def no_build(_skip: bool) -> None:
        return None

    for system in ("procrastinate", "pgmq"):
        bench_dir = args.harness / f"{system}-bench"
        adapters.ADAPTERS[system] = adapters.AdapterEntry(
            bench_dir=bench_dir, builder=no_build,
            launcher=native([args.peer_python, "main.py"], str(bench_dir)))
    adapters.ADAPTERS["geomill"] = adapters.AdapterEntry(
        bench_dir=HERE, builder=no_build,
        launcher=native([args.geomill_python, str(HERE / "geomill_adapter.py")], str(HERE),
                        {"PYTHONPATH": args.geomill_src, "GEOMILL_BENCH_PROCESSES":
                         os.environ.get("GEOMILL_BENCH_PROCESSES", "2")}))
    return int(orchestrator.main(["run", *rest]))


if __name__ == "__main__":
    raise SystemExit(main())
