"""Shared by the benchmarks: BENCHMARKS.md sections (each script replaces only its own) and throwaway databases."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def update_section(heading: str, section: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the section that starts with `heading` (up to the next `## ` heading) or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def publish(heading: str, section: str, write_md: bool) -> None:
    """Print a benchmark's section and, unless told not to, put it in BENCHMARKS.md."""
    print(section)
    if write_md:
        update_section(heading, section)


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_create_db(prefix: str) -> str:
    """A fresh, empty database on the local server (trust auth) for one benchmark run; returns its name."""
    import psycopg

    db = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    return db


def pg_drop_db(db: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def cpu_times() -> list[int]:
    """The whole machine's CPU time since boot (/proc/stat): user nice system idle iowait irq softirq steal, in
    clock ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def busy_cpu_seconds() -> float:
    """CPU time spent busy by the whole machine since boot (/proc/stat), in seconds."""
    fields = cpu_times()
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
