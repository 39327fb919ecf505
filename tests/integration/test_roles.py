"""Roles as separate OS processes on one database: routing to the right worker, cancellation, manual retry,
dead letters. Parametrized over the database backends."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import samples
from procs import cli, geomill_env, start, stop, submit, tasks, wait_for, wait_processing, wait_terminal


def _serve(env: dict[str, str], mode: str, app: str, *extra: str) -> object:
    return start(dict(env, GEOMILL_APP_NAME=app), "serve", "--mode", mode, *extra)


@pytest.mark.slow
def test_mixed_queue_job_runs_each_stage_on_the_right_worker(tmp_path: Path, db_url: str | None) -> None:
    """validate and stac on raster-tasks, the (big) COG on long-tasks; a platform process plans; the long worker
    is down at first: the COG task waits queued (not failed) until a long worker starts."""
    source = tmp_path / "RGB.byte.tif"
    shutil.copyfile(samples.raster("RGB.byte.tif"), source)
    env = geomill_env(tmp_path / "d", db_url, long_task_size_mb=0.5, workers=1, lease_seconds=10)
    procs = [_serve(env, "platform_only", "platform"), _serve(env, "worker_raster", "raster")]
    long_worker = None
    try:
        job_id = submit(env, "process_raster", source=str(source))
        cog = wait_for(lambda: [t for t in tasks(env, job_id) if t["stage"] == 4], 60, "the COG task")[0]
        assert cog["target_queue"] == "long-tasks"
        time.sleep(3)  # no long worker: the task waits
        waiting = next(t for t in tasks(env, job_id) if t["stage"] == 4)
        assert waiting["status"] == "queued" and waiting["attempt"] == 0
        long_worker = _serve(env, "worker_long", "long")
        doc = wait_terminal(env, job_id, timeout=120)
    finally:
        stop(*procs, *([long_worker] if long_worker else []))
    assert doc["status"] == "completed", doc
    by_stage = {t["stage"]: t for t in tasks(env, job_id)}
    assert by_stage[1]["target_queue"] == "raster-tasks" and by_stage[1]["executed_by_app"].startswith("raster#")
    assert set(by_stage) == {1, 4, 6}  # validate, create_cog, stac_item: the tiled path's stages plan no task
    assert by_stage[4]["target_queue"] == "long-tasks" and by_stage[4]["executed_by_app"].startswith("long#")
    assert by_stage[6]["target_queue"] == "raster-tasks" and by_stage[6]["executed_by_app"].startswith("raster#")


def test_platform_only_plans_but_runs_no_tasks(tmp_path: Path, db_url: str | None) -> None:
    env = geomill_env(tmp_path / "d", db_url, workers=1)
    platform = _serve(env, "platform_only", "platform")
    try:
        job_id = submit(env, "hello_world", n=3)
        wait_for(lambda: len(tasks(env, job_id)) == 3, 30, "stage 1 to be planned")
        time.sleep(1.5)
        assert {t["status"] for t in tasks(env, job_id)} == {"queued"}
    finally:
        stop(platform)


def test_cancel_stops_queued_and_running_tasks(tmp_path: Path, db_url: str | None) -> None:
    env = geomill_env(tmp_path / "d", db_url, workers=2, lease_seconds=3)
    job_id = submit(env, n=6, sleep_s=60, tag="cancel")
    worker = start(env, "worker", "-w", "2")
    try:
        wait_processing(env, job_id)
        t0 = time.monotonic()
        result = cli(env, "cancel", job_id[:12], "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "cancelled"
        wait_for(lambda: all(t["status"] == "cancelled" for t in tasks(env, job_id)), 30, "all tasks cancelled")
        assert time.monotonic() - t0 < 20  # running tasks learned of it at a heartbeat, not after 60 s
    finally:
        stop(worker)
    assert cli(env, "cancel", job_id).returncode == 0  # cancelling again changes nothing, and says so


def test_retry_reopens_a_failed_job(tmp_path: Path, db_url: str | None) -> None:
    env = geomill_env(tmp_path / "d", db_url, workers=1)
    run = cli(env, "run", "fanout", "-p", "n=2", "-p", "fail_attempts=3", "--json")
    assert run.returncode == 1
    failed = json.loads(run.stdout)
    assert failed["status"] == "failed" and len(failed["failed_tasks"]) == 2
    assert {t["attempt"] for t in failed["failed_tasks"]} == {3}  # retried up to max_attempts, then failed
    first, second = (t["task_id"] for t in failed["failed_tasks"])
    assert cli(env, "retry", first).returncode == 0
    assert json.loads(cli(env, "status", failed["job_id"], "--json").stdout)["status"] == "processing"
    assert cli(env, "retry", second).returncode == 0
    worker = start(env, "worker", "-w", "1")
    try:
        doc = wait_terminal(env, failed["job_id"], timeout=60)
    finally:
        stop(worker)
    assert doc["status"] == "completed", doc  # each retried task got a 4th attempt, and the job went on
    assert doc["advances"] == doc["stage_count"] + 2  # every stage once, the first finish (failed), the last
    assert {(t["attempt"], t["status"]) for t in tasks(env, failed["job_id"])} == {(4, "completed")}
    assert cli(env, "retry", first).returncode == 1  # not failed any more: refused


def test_unknown_task_type_is_dead_lettered(tmp_path: Path, db_url: str | None) -> None:
    plugin_env = geomill_env(tmp_path / "d", db_url, workers=1, plugins='["plugins.stubborn"]')
    job_id = submit(plugin_env, "test_overrun", seconds=0.1)
    # a worker that does not know test_overrun's task type (the plugin is not loaded here) plans nothing, so plan
    # with the plugin, then run the tasks without it
    platform = start(dict(plugin_env, GEOMILL_APP_NAME="platform"), "serve", "--mode", "platform_only")
    try:
        wait_for(lambda: tasks(plugin_env, job_id), 30, "the stage to be planned")
    finally:
        stop(platform)
    env = geomill_env(tmp_path / "d", db_url, workers=1)
    worker = start(env, "serve", "--queues", "default-tasks")
    try:
        wait_for(lambda: tasks(env, job_id)[0]["status"] == "failed", 30, "the task to fail")
    finally:
        stop(worker)
    letters = json.loads(cli(env, "dead-letters", "--json").stdout)
    assert letters and letters[0]["task_id"] == tasks(env, job_id)[0]["task_id"]
    assert "test.overrun" in letters[0]["reason"]
    assert tasks(env, job_id)[0]["attempt"] == 1  # not retried
