"""GDAL's and libtiff's messages tied to the task that caused them (issue 25): in the task's error record and in
the log with the task's id, instead of raw lines on the worker's stderr."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pydantic import BaseModel

from geomill.domain import Task, TaskStatus
from geomill.engine.context import TaskContext
from geomill.engine.registry import TaskType
from geomill.logs import JsonFormatter
from geomill.runtime import Runtime
from geomill.worker.gdal_messages import NativeStderr
from geomill.worker.loop import WorkerLoop
from small_disk import fill, small_disk

ROOT = Path(__file__).resolve().parents[2]


class WriteParams(BaseModel):
    path: str


class ReadParams(BaseModel):
    path: str


class Done(BaseModel):
    ok: bool = True


def write_noise_tiff(params: WriteParams, ctx: TaskContext) -> Done:
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 1, "dtype": "uint8", "tiled": True,
               "crs": "EPSG:4326", "transform": Affine(0.001, 0, 0, 0, -0.001, 1)}
    with rasterio.open(params.path, "w", **profile) as ds:
        ds.write(np.random.default_rng(25).integers(0, 255, (1, 512, 512), dtype="uint8"))
    return Done()


def read_tiff(params: ReadParams, ctx: TaskContext) -> Done:
    with rasterio.open(params.path) as ds:
        ds.read()
    return Done()


def _runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    rt = make_runtime()
    rt.registry.register_task_type(TaskType("t.write_tiff", write_noise_tiff, WriteParams, Done, "default-tasks"))
    rt.registry.register_task_type(TaskType("t.read_tiff", read_tiff, ReadParams, Done, "default-tasks"))
    return rt


def _task(task_type: str, params: dict[str, Any]) -> Task:
    return Task(task_id=f"t-{task_type}", job_id="j-gdal", stage=1, task_key="k", task_type=task_type, params=params,
                status=TaskStatus.PROCESSING, attempt=1, max_attempts=3, target_queue="default-tasks",
                timeout_seconds=60, created_at=datetime.now(UTC))


def test_libtiffs_raw_disk_full_line_on_a_full_tmpfs_is_in_the_error_and_the_log_with_the_task_id(
    make_runtime: Callable[..., Runtime], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt = _runtime(make_runtime)
    loop = WorkerLoop(rt, ["default-tasks"])
    with small_disk(tmp_path / "small", "1m") as folder:
        fill(folder, leave_bytes=64 * 1024)
        task = _task("t.write_tiff", {"path": str(folder / "noise.tif")})
        loop.native_stderr = native = NativeStderr().install()  # as a worker process does
        try:
            with caplog.at_level(logging.INFO, logger="geomill"):
                outcome, _ = loop._run(task)
        finally:
            native.uninstall()
    assert outcome.error is not None and outcome.error["type"] == "RasterioIOError"
    said = outcome.error["gdal_messages"]
    assert "_tiffWriteProc: No space left on device." in said  # libtiff's raw line, once
    assert any("Write error" in m for m in said)  # and GDAL's follow-up error (rasterio's log)
    raw = [r for r in caplog.records if r.getMessage() == "_tiffWriteProc: No space left on device."]
    assert raw and all(r.levelname == "WARNING" and r.task_id == task.task_id for r in raw)  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(raw[0]))
    assert line["task_id"] == task.task_id and line["job_id"] == "j-gdal" and line["logger"] == "geomill.gdal"


def test_a_truncated_tiffs_gdal_errors_are_in_the_error_record_and_the_log_with_the_task_id(
    make_runtime: Callable[..., Runtime], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt = _runtime(make_runtime)
    whole = tmp_path / "whole.tif"
    write_noise_tiff(WriteParams(path=str(whole)), None)  # type: ignore[arg-type]
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with caplog.at_level(logging.INFO, logger="geomill"):
        outcome, _ = WorkerLoop(rt, ["default-tasks"])._run(_task("t.read_tiff", {"path": str(truncated)}))
    assert outcome.error is not None
    said = outcome.error["gdal_messages"]
    assert any("TIFFReadEncodedTile" in m and "expected 65536" in m for m in said)  # libtiff's words, via GDAL
    assert not any(m.startswith("GDAL signalled") for m in said)  # rasterio's wrapping taken off
    summary = [r for r in caplog.records if r.getMessage().startswith("GDAL said: ")]
    assert len(summary) == 1 and summary[0].task_id == "t-t.read_tiff"  # type: ignore[attr-defined]
    assert "IReadBlock failed" in summary[0].getMessage()


def test_a_successful_tasks_handled_gdal_errors_stay_out_of_the_log(
    make_runtime: Callable[..., Runtime], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt = _runtime(make_runtime)
    with caplog.at_level(logging.INFO):
        outcome, _ = WorkerLoop(rt, ["default-tasks"])._run(_task("t.write_tiff", {"path": str(tmp_path / "a.tif")}))
    assert outcome.error is None and outcome.result == {"ok": True}
    assert not [r for r in caplog.records if r.name.startswith("rasterio") and r.levelno >= logging.INFO]
    assert logging.getLogger("rasterio._err").propagate and logging.getLogger("rasterio._env").level == 0  # restored


def test_a_worker_process_on_a_full_tmpfs_ties_libtiffs_line_to_the_task_in_its_json_log(tmp_path: Path) -> None:
    """End to end: `geomill run` with worker processes and JSON logs; the job's failed task and the log agree."""
    with small_disk(tmp_path / "small", "1m") as folder:
        fill(folder, leave_bytes=64 * 1024)
        env = dict(os.environ, GEOMILL_DATA_DIR=str(tmp_path / "d"), GEOMILL_PLUGINS='["plugins.tiff_writer"]',
                   GEOMILL_WORKERS="1", GEOMILL_LOG_JSON="true", GEOMILL_LOG_LEVEL="WARNING",
                   PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-m", "geomill.cli", "run", "test_write_tiff",
                               "-p", f"path={folder / 'noise.tif'}", "--json"],
                              env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    (task,) = json.loads(proc.stdout)["failed_tasks"]
    assert "_tiffWriteProc: No space left on device." in task["error"]["gdal_messages"]
    logged = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    raw = [d for d in logged if d["msg"] == "_tiffWriteProc: No space left on device."]
    assert raw and all(d["logger"] == "geomill.gdal" and d["task_id"] == task["task_id"] for d in raw)
    assert "_tiffWriteProc" not in "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("{"))
