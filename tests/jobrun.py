"""Run a job in-process: through its registered handlers stage by stage (the engine minus the store: for tests of
job types' planning and results without a worker, a queue or a database), or on a runtime with an in-process worker
loop until it is terminal."""

from __future__ import annotations

import time
from typing import Any

from geomill.domain import Job
from geomill.domain.models import StageResults
from geomill.engine.context import TaskContext
from geomill.engine.registry import Registry
from geomill.runtime import Runtime
from geomill.worker.loop import WorkerLoop


def run_job(registry: Registry, job_name: str, params: Any, ctx: TaskContext) -> tuple[dict[str, Any],
                                                                                        list[StageResults]]:
    """Plan each stage, run its tasks through the registered handlers, finalize; (result, stage results)."""
    job = registry.job_type(job_name)
    done: list[StageResults] = []
    for stage in job.stages:
        results = {}
        for spec in stage.plan(params, done):
            task_type = registry.task_type(spec.task_type)
            result = task_type.handler(task_type.params_model.model_validate(spec.params), ctx)
            results[spec.key] = task_type.result_model.model_validate(result).model_dump(mode="json")
        done.append(StageResults(stage.name, results, {}))
    return job.finalize(params, done), done


def run_until_finished(rt: Runtime, job_id: str, timeout: float = 10.0, loop: WorkerLoop | None = None) -> Job:
    """Run a worker loop in-process until the job is terminal, sleeping a little while tasks wait out backoff."""
    loop = loop or WorkerLoop(rt, rt.settings.queues)
    deadline = time.monotonic() + timeout
    while True:
        job = rt.store.get_job(job_id)
        if job.status.is_terminal:
            return job
        assert time.monotonic() < deadline, f"job still {job.status} at stage {job.stage} after {timeout} s"
        if not loop.run_once():
            time.sleep(0.01)
