"""The CLI as a user runs it: real subprocesses, real files, a fresh data folder per test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rio_cogeo.cogeo import cog_validate

import samples

GEOMILL = [sys.executable, "-m", "geomill.cli"]


def geomill(data: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GEOMILL_DATA_DIR=str(data), GEOMILL_WORKERS="2")
    return subprocess.run([*GEOMILL, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=data.parent)


def rows(data: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(data / "geomill.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_demo_in_a_temp_folder(tmp_path: Path) -> None:
    data = tmp_path / "geomill-data"
    first = geomill(data, "demo", "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert [j["status"] for j in doc["jobs"]] == ["completed", "completed"]
    for job in doc["jobs"]:
        valid, errors, _ = cog_validate(job["cog_path"])
        assert valid and not errors
        item = json.loads(Path(job["stac_item_path"]).read_text())
        assert item["type"] == "Feature" and item["assets"]
    assert (data / "silver" / "catalog" / "catalog.json").exists()
    finished = rows(data, "SELECT job_id, finished_at FROM jobs ORDER BY job_id")
    again = geomill(data, "demo", "--json")  # same jobs again: not redone
    assert again.returncode == 0, again.stderr
    assert rows(data, "SELECT job_id, finished_at FROM jobs ORDER BY job_id") == finished


def test_human_demo_output_shows_progress_and_outputs(tmp_path: Path) -> None:
    result = geomill(tmp_path / "d", "demo")
    assert result.returncode == 0, result.stderr
    assert "outputs" in result.stdout and "stac_item" in result.stdout and "completed" in result.stdout


def test_run_hello_world_json(tmp_path: Path) -> None:
    result = geomill(tmp_path / "d", "run", "hello_world", "-p", "n=4", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "completed" and doc["result"]["replies"] == 4
    assert [s["total"] for s in doc["stages"]] == [4, 4]


def _run_raster(data: Path, source: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = geomill(data, "run", "process_raster", "-p", f"source={source}", "--json")
    return result, json.loads(result.stdout)


@pytest.fixture()
def seeded(tmp_path: Path) -> Path:
    """A data folder holding one completed job, so tests can check bad input leaves it untouched."""
    data = tmp_path / "d"
    assert geomill(data, "run", "hello_world", "-p", "n=2").returncode == 0
    return data


def _snapshot(data: Path) -> list[tuple]:
    return rows(data, "SELECT * FROM jobs WHERE job_type = 'hello_world'") + rows(
        data, "SELECT t.* FROM tasks t JOIN jobs j USING (job_id) WHERE j.job_type = 'hello_world'")


@pytest.mark.parametrize("case", ["missing", "truncated", "no_crs", "not_a_raster"])
def test_bad_raster_fails_clearly_without_retries(seeded: Path, tmp_path: Path, case: str) -> None:
    before = _snapshot(seeded)
    if case == "missing":  # refused at submit: no job stored, no worker started
        result = geomill(seeded, "run", "process_raster", "-p", f"source={tmp_path / 'nope.tif'}", "--json")
        assert result.returncode == 2, result.stderr
        assert "nope.tif" in json.loads(result.stdout)["error"] and "no such file" in result.stdout
        assert _snapshot(seeded) == before and rows(seeded, "SELECT COUNT(*) FROM jobs") == [(1,)]
        return
    if case == "truncated":
        source = str(tmp_path / "truncated.tif")
        blob = samples.raster("RGB.byte.tif").read_bytes()
        Path(source).write_bytes(blob[: len(blob) // 2])
        expect = "truncated.tif"
    elif case == "no_crs":
        source = str(tmp_path / "float.tif")
        shutil.copyfile(samples.raster("float.tif"), source)
        expect = "no coordinate reference system"
    else:
        source = str(tmp_path / "notes.tif")
        Path(source).write_text("this is not a raster\n")
        expect = "notes.tif"
    result, doc = _run_raster(seeded, source)
    assert result.returncode == 2, result.stderr  # a bad file, not a platform failure (issue 19 bug 3)
    assert doc["status"] == "failed" and doc["error"]["cause"] == "invalid_input"
    assert expect in doc["error"]["message"], doc["error"]
    assert doc["failed_tasks"][0]["attempt"] == 1  # InvalidInput: no retry storm
    assert doc["failed_tasks"][0]["error"]["type"] == "InvalidInput"
    assert [s["stage"] for s in doc["stages"] if s.get("total") is not None] == [1]  # nothing planned after
    assert _snapshot(seeded) == before


def test_unknown_job_type_and_wrong_params_store_nothing(seeded: Path) -> None:
    before = rows(seeded, "SELECT COUNT(*) FROM jobs")
    unknown = geomill(seeded, "run", "make_coffee")
    assert unknown.returncode == 2
    assert "unknown job type 'make_coffee'" in unknown.stderr and "process_raster" in unknown.stderr
    wrong = geomill(seeded, "run", "hello_world", "-p", "n=abc")
    assert wrong.returncode == 2 and "n:" in wrong.stderr and "integer" in wrong.stderr
    (seeded.parent / "x.tif").touch()
    bad_crs = geomill(seeded, "submit", "process_raster", "-p", "source=x.tif", "-p", "target_crs=EPSG:999999")
    assert bad_crs.returncode == 2 and "target_crs" in bad_crs.stderr
    assert rows(seeded, "SELECT COUNT(*) FROM jobs") == before


def test_submit_worker_status_jobs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    submitted = geomill(data, "submit", "hello_world", "-p", "n=3")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert len(job_id) == 64
    assert geomill(data, "submit", "hello_world", "-p", "n=3").stdout.strip() == job_id  # idempotent
    queued = json.loads(geomill(data, "status", job_id[:10], "--json").stdout)
    assert queued["status"] == "queued"
    env = dict(os.environ, GEOMILL_DATA_DIR=str(data))
    worker = subprocess.Popen([*GEOMILL, "worker", "-w", "1"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while json.loads(geomill(data, "status", job_id, "--json").stdout)["status"] != "completed":
            assert time.monotonic() < deadline, "worker did not finish the job"
            time.sleep(0.3)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(30) == 0
    listed = json.loads(geomill(data, "jobs", "--status", "completed", "--json").stdout)
    assert [j["job_id"] for j in listed] == [job_id]
    human = geomill(data, "status", job_id)
    assert "completed" in human.stdout and "reply" in human.stdout
    forced = json.loads(geomill(data, "run", "hello_world", "-p", "n=3", "--force", "--json").stdout)
    assert forced["job_id"] != job_id and forced["resubmit_of"] == job_id and forced["status"] == "completed"


def test_job_types_lists_parameter_schemas(tmp_path: Path) -> None:
    result = geomill(tmp_path / "d", "job-types", "--json")
    assert result.returncode == 0, result.stderr
    types = {t["name"]: t for t in json.loads(result.stdout)}
    assert {"process_raster", "hello_world"} <= set(types)
    props = types["process_raster"]["parameters"]["properties"]
    assert {"source", "target_crs", "compression", "resampling"} <= set(props)
    assert [s["name"] for s in types["process_raster"]["stages"]] == [
        "validate", "tile_scheme", "extract_tiles", "create_cog", "mosaic", "stac_item"]  # single + tiled path
    assert "n" in types["hello_world"]["parameters"]["properties"]


def test_params_file_and_reprojection(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"source": str(samples.raster("RGB.byte.tif")), "target_crs": "EPSG:4326"}))
    result = geomill(tmp_path / "d", "run", "process_raster", "--params-file", str(params), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["result"]["outputs"][0]
    assert out["crs"] == "EPSG:4326"
    assert cog_validate(out["cog_path"])[0]
