"""Demo job types: `hello_world` (fan-out then a plan built from results) and `fanout` (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, Field

from geomill.domain import FailurePolicy, FinishedStage, StageSpec, TaskSpec
from geomill.engine.registry import JobType, Registry
from geomill.tasks.demo import GREET, REPLY, WORK


class HelloWorldParams(BaseModel):
    n: int = Field(3, ge=0, le=100_000, description="number of greetings (stage 1 tasks)")


def plan_greetings(params: HelloWorldParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [GREET.spec(f"greet-{i:06d}", {"index": i}) for i in range(params.n)]


def plan_replies(params: HelloWorldParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    greetings = previous[-1].results
    return [REPLY.spec(f"reply-{key}", {"greeting": r["greeting"]}) for key, r in sorted(greetings.items())]


def finalize_hello(params: HelloWorldParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    replies = [r["reply"] for _, r in sorted(stages[1].results.items())]
    return {"greetings": len(stages[0].results), "replies": len(replies), "sample": replies[:3]}


class FanoutParams(BaseModel):
    n: int = Field(10, ge=0, le=1_000_000, description="tasks per stage")
    stages: int = Field(1, ge=1, le=10, description="number of sequential stages")
    sleep_s: float = Field(0.0, ge=0, le=3600, description="work time of each task")
    fail_attempts: int = Field(0, ge=0, le=100, description="the first N attempts of each task fail transiently")
    invalid_keys: list[int] = Field(default=[], description="task indexes that refuse their input")
    tolerate: bool = Field(False, description="failed tasks do not fail the job (completed_with_errors)")
    marker_dir: str | None = Field(None, description="record each execution in this folder")
    tag: str = Field("", description="free text, to make otherwise identical jobs distinct")


def _plan_work(params: FanoutParams, previous: Sequence[FinishedStage]) -> Iterator[TaskSpec]:
    """A generator: the orchestrator inserts a big stage chunk by chunk as the plan yields it."""
    stage = len(previous) + 1
    bad = set(params.invalid_keys)
    for i in range(params.n):
        yield WORK.spec(f"s{stage}-{i:07d}", {
            "key": f"s{stage}-{i:07d}", "sleep_s": params.sleep_s, "fail_attempts": params.fail_attempts,
            "invalid": i in bad, "marker_dir": params.marker_dir,
        })


def finalize_fanout(params: FanoutParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    return {
        "stages": len(stages),
        "completed": sum(s.completed_count for s in stages),  # counts, not rows: no read of N results
        "failed": sum(s.failed_count for s in stages),
    }


def _fanout_policy(params: FanoutParams) -> FailurePolicy:
    return FailurePolicy.TOLERATE if params.tolerate else FailurePolicy.FAIL_JOB


class _FanoutStages:
    """One StageSpec per possible stage; plans past `params.stages` are empty, so those stages finish at once."""

    @staticmethod
    def build(max_stages: int) -> tuple[StageSpec, ...]:
        def plan_for(k: int):
            def plan(params: FanoutParams, previous: Sequence[FinishedStage]) -> Iterable[TaskSpec]:
                return _plan_work(params, previous) if k <= params.stages else []
            return plan

        return tuple(
            StageSpec(f"work-{k}", plan_for(k), FailurePolicy.FAIL_JOB, f"N parallel tasks (stage {k})",
                      policy_from_params=_fanout_policy)
            for k in range(1, max_stages + 1)
        )


def register(registry: Registry) -> None:
    registry.register_job_type(JobType(
        name="hello_world",
        description="N greetings in parallel, then one reply per greeting built from stage 1's results.",
        params_model=HelloWorldParams,
        stages=(StageSpec("greet", plan_greetings, description="N greetings in parallel"),
                StageSpec("reply", plan_replies, description="one reply per greeting (planned from results)")),
        finalize=finalize_hello,
    ))
    registry.register_job_type(JobType(
        name="fanout",
        description="Stages of N parallel configurable tasks: for tests, chaos drills and benchmarks.",
        params_model=FanoutParams,
        stages=_FanoutStages.build(3),
        finalize=finalize_fanout,
    ))
