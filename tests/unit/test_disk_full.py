"""A full disk (issue 25) as health and the CLI see it: a small tmpfs holds the data folder, then is filled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geomill.cli import app
from geomill.roles import resolve_role
from geomill.runtime import Runtime
from geomill.service.health import health_document
from small_disk import fill, small_disk


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "rt0", "8m") as root:  # rt0: where make_runtime puts its first data folder
        yield root


@pytest.fixture
def small_rt(full_disk: Path, make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime(min_free_mb=1)


def test_health_on_a_full_disk_is_degraded_and_shows_the_free_bytes(full_disk: Path, small_rt: Runtime) -> None:
    assert small_rt.settings.data_dir == full_disk
    ok = health_document(small_rt, resolve_role("standalone"), has_http=False)[0]["components"]
    assert ok["storage"]["status"] == "ok" and ok["storage"]["free_bytes"]["silver"] > 1024 * 1024
    fill(full_disk)
    doc, down = health_document(small_rt, resolve_role("standalone"), has_http=False)
    storage_doc, database_doc = doc["components"]["storage"], doc["components"]["database"]
    assert storage_doc["status"] == "degraded" and set(storage_doc["low_space"]) == {"bronze", "silver", "gold"}
    assert storage_doc["free_bytes"]["silver"] < 1024 * 1024 and storage_doc["min_free_bytes"] == 1024 * 1024
    assert database_doc["status"] == "degraded" and database_doc["free_bytes"] < 1024 * 1024
    assert doc["status"] == "degraded" and not down  # reads still work: degraded, not down


def test_submit_on_a_full_disk_prints_one_clear_error_and_exits_1(full_disk: Path) -> None:
    data = full_disk / "cli"
    runner = CliRunner()
    first = runner.invoke(app, ["submit", "hello_world", "--data-dir", str(data)], env={"GEOMILL_LOG_LEVEL": "ERROR", "COLUMNS": "1000"})
    assert first.exit_code == 0, first.output
    fill(full_disk)
    out = runner.invoke(app, ["submit", "hello_world", "-p", "n=50", "--data-dir", str(data)],
                        env={"GEOMILL_LOG_LEVEL": "ERROR", "COLUMNS": "1000"})
    assert out.exit_code == 1, (out.output, out.exception)
    assert "is full" in out.output and str(data / "geomill.db") in out.output and "0 bytes free" in out.output
    assert "Traceback" not in out.output and isinstance(out.exception, SystemExit)
