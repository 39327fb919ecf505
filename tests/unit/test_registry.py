"""Registry: inconsistent declarations fail when registered, not at run time."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from geomill.domain import InvalidInput, RegistryError, StageSpec, TaskSpec, UnknownJobType
from geomill.engine.registry import JobType, Registry, TaskType


class P(BaseModel):
    n: int = 1


class R(BaseModel):
    ok: bool = True


class NotAModel:
    pass


def handler(params: P, ctx: Any) -> R:
    return R()


def plan(params: Any, previous: Any) -> list[TaskSpec]:
    return []


def finalize(params: Any, stages: Any) -> dict[str, Any]:
    return {}


def task_type(**overrides: Any) -> TaskType:
    return replace(TaskType("t.ok", handler, P, R, "default-tasks"), **overrides)


def job_type(**overrides: Any) -> JobType:
    base = JobType("j.ok", "a job", P, (StageSpec("one", plan),), finalize)
    return replace(base, **overrides)


def test_a_consistent_task_and_job_type_register_and_are_found() -> None:
    reg = Registry()
    tt = reg.register_task_type(task_type())
    jt = reg.register_job_type(job_type())
    assert reg.task_type("t.ok") is tt
    assert reg.job_type("j.ok") is jt
    assert [t.name for t in reg.task_types()] == ["t.ok"]
    assert [j.name for j in reg.job_types()] == ["j.ok"]


def test_unknown_queue_is_refused_naming_the_known_queues() -> None:
    reg = Registry()
    with pytest.raises(RegistryError, match="unknown queue 'gpu-tasks'.*raster-tasks"):
        reg.register_task_type(task_type(queue="gpu-tasks"))
    with pytest.raises(RegistryError):
        reg.task_type("t.ok")  # nothing half-registered


def test_the_jobs_queue_is_not_a_task_queue() -> None:
    with pytest.raises(RegistryError, match="unknown queue"):
        Registry().register_task_type(task_type(queue="jobs"))


def test_custom_queue_list_is_honoured() -> None:
    reg = Registry(queues=("gpu-tasks",))
    reg.register_task_type(task_type(queue="gpu-tasks"))
    with pytest.raises(RegistryError):
        reg.register_task_type(task_type(name="t.two", queue="default-tasks"))


def test_duplicate_task_type_is_refused() -> None:
    reg = Registry()
    reg.register_task_type(task_type())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register_task_type(task_type(queue="raster-tasks"))
    assert reg.task_type("t.ok").queue == "default-tasks"


def test_duplicate_job_type_is_refused() -> None:
    reg = Registry()
    reg.register_job_type(job_type())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register_job_type(job_type(description="again"))
    assert reg.job_type("j.ok").description == "a job"


@pytest.mark.parametrize("field", ["params_model", "result_model"])
@pytest.mark.parametrize("bad", [NotAModel, dict, None, P()])
def test_task_type_models_must_be_pydantic_models(field: str, bad: Any) -> None:
    with pytest.raises(RegistryError, match="pydantic model"):
        Registry().register_task_type(task_type(**{field: bad}))


@pytest.mark.parametrize("bad", [NotAModel, dict, None])
def test_job_type_params_model_must_be_a_pydantic_model(bad: Any) -> None:
    with pytest.raises(RegistryError, match="pydantic model"):
        Registry().register_job_type(job_type(params_model=bad))


@pytest.mark.parametrize("timeout", [0, -5])
def test_task_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(RegistryError, match="timeout"):
        Registry().register_task_type(task_type(timeout_seconds=timeout))


def test_job_type_without_stages_is_refused() -> None:
    with pytest.raises(RegistryError, match="no stages"):
        Registry().register_job_type(job_type(stages=()))


def test_job_type_repeating_a_stage_name_is_refused() -> None:
    stages = (StageSpec("a", plan), StageSpec("b", plan), StageSpec("a", plan))
    with pytest.raises(RegistryError, match="repeats a stage name"):
        Registry().register_job_type(job_type(stages=stages))


def test_unknown_job_type_lists_known_ones_and_is_invalid_input() -> None:
    reg = Registry()
    reg.register_job_type(job_type(name="zeta"))
    reg.register_job_type(job_type(name="alpha"))
    with pytest.raises(UnknownJobType) as info:
        reg.job_type("nope")
    err = info.value
    assert isinstance(err, InvalidInput)
    assert err.field == "job_type"
    assert err.name == "nope"
    assert err.known == ["alpha", "zeta"]
    assert "'nope'" in str(err) and "alpha, zeta" in str(err)


def test_unknown_task_type_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="unknown task type 'x'"):
        Registry().task_type("x")


def test_demo_registry_routes_every_task_type_to_a_known_queue(registry: Registry) -> None:
    assert {t.name for t in registry.task_types()} == {"demo.greet", "demo.reply", "demo.work"}
    assert {j.name for j in registry.job_types()} == {"hello_world", "fanout"}
    for tt in registry.task_types():
        assert tt.queue in registry.queues


def test_a_task_spec_is_built_from_the_task_type() -> None:
    tt = task_type()
    spec = tt.spec("k", P(n=5), size_bytes=10)
    assert (spec.key, spec.task_type, spec.params, spec.size_bytes) == ("k", "t.ok", {"n": 5}, 10)
    assert tt.spec("k2", {"n": 2}).params == {"n": 2}


def test_previous_results_are_read_by_stage_name() -> None:
    from geomill.domain.models import StageResults
    from geomill.jobs.results import stage, stage_errors, stage_result, stage_results

    done = [StageResults("a", {"x": {"v": 1}}, {}), StageResults("b", {}, {"y": {"type": "E"}})]
    assert stage(done, "b") is done[1] and stage(done, "zz") is None
    assert stage_result(done, "a", "x") == {"v": 1} and stage_result(done, "a", "nope") is None
    assert stage_results(done, "missing") == {} and stage_errors(done, "b") == {"y": {"type": "E"}}
