"""A geomill plugin (GEOMILL_PLUGINS=["harness_job"], this folder on PYTHONPATH): the job type `harness_job`, the
queue harness's unit of work. One stage of one `demo.work` task: a harness job is one geomill job with one task.
(The drill type `fanout` would do with n=1, stages=1, but it always has 3 stage specs, the last two empty; each
empty stage costs the planner one more event, so a job would take 4 trips through the events queue instead of 2.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from geomill.domain import FinishedStage, StageSpec, TaskSpec
from geomill.engine.registry import JobType, Registry
from geomill.tasks.demo import WORK

JOB_TYPE = "harness_job"


class HarnessJobParams(BaseModel):
    sleep_s: float = Field(0.0, ge=0, le=3600, description="work time of the task (JOB_WORK_MS)")
    tag: str = Field("", description="unique per harness job (the job id is a digest of the parameters)")
    marker_dir: str | None = Field(None, description="record each execution in this folder (tests)")


def plan(params: HarnessJobParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [WORK.spec("work", {"key": params.tag, "sleep_s": params.sleep_s, "marker_dir": params.marker_dir})]


def finalize(params: HarnessJobParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    return {"completed": stages[0].completed_count}


def register(registry: Registry) -> None:
    registry.register_job_type(JobType(
        name=JOB_TYPE, description="the queue harness's job: one task", params_model=HarnessJobParams,
        stages=(StageSpec("work", plan, description="one task"),), finalize=finalize))
