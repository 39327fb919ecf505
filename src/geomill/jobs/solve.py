"""The `solve` job type: one stage, one `compute.solve` task on its own queue. Submitted through `POST /jobs/run`
(service/compute.py), whose job id is the inputs hash."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from geomill.domain import FinishedStage, StageSpec, TaskSpec
from geomill.engine.registry import JobType, Registry
from geomill.tasks.solve import SOLVE

JOB_TYPE = "solve"


class SolveParams(BaseModel):
    """What a run request names: the contract (definition, version), its inputs and the calling application."""

    model_config = ConfigDict(extra="forbid")

    app_id: str | None = Field(None, max_length=200, description="the calling application (recorded)")
    definition: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="the contract's definition")
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$", description="the contract's version")
    inputs: dict[str, Any] = Field(description="inputs conforming to the contract's inputs.schema.json")
    contract_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$",
                                        description="the contract's sha256 (GET /contracts on an AppServer): optional pin, "
                                                    "refused when it differs; set at submit")


def plan_solve(params: SolveParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [SOLVE.spec("solve", params)]


def finalize_solve(params: SolveParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """The solver's outputs and the artifacts' locations (the result endpoints read the same from the store)."""
    done = stages[0].results.get("solve")
    if done is None:
        return {"definition": params.definition, "version": params.version}
    return {k: done[k] for k in ("definition", "version", "contract_sha256", "engine", "outputs", "artifacts")}


def register(registry: Registry) -> None:
    registry.register_job_type(JobType(
        name=JOB_TYPE,
        description="Solve a versioned compute contract (e.g. sitefit 1.0.0) in process or on an AppServer; "
                    "submit with POST /jobs/run (docs/contracts.md).",
        params_model=SolveParams,
        stages=(StageSpec("solve", plan_solve, description="one solve of the contract"),),
        finalize=finalize_solve,
    ))
