"""Run a job through its registered handlers in-process, stage by stage: the engine minus the store.

For tests of job types' planning and results without a worker, a queue or a database."""

from __future__ import annotations

from typing import Any

from geomill.domain.models import StageResults
from geomill.engine.context import TaskContext
from geomill.engine.registry import Registry


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
