"""Parameters and result of the solve task."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SolveTaskParams(BaseModel):
    app_id: str | None = Field(None, description="the calling application (recorded with the result)")
    definition: str
    version: str
    inputs: dict[str, Any]
    contract_sha256: str | None = Field(None, description="the contract checked at submit; the worker's must match")


class Artifact(BaseModel):
    name: str
    uri: str
    media_type: str
    size_bytes: int
    sha256: str


class SolveTaskResult(BaseModel):
    definition: str
    version: str
    contract_sha256: str
    engine: dict[str, Any]
    outputs: dict[str, Any]
    artifacts: list[Artifact]
