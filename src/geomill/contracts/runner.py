"""Running a solver under its contract: inputs checked, the solver called, outputs checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geomill.contracts.model import Contract, ContractViolation
from geomill.engine.registry import resolve


def check_submission(contract: Contract, inputs: Any) -> None:
    """What a submission must pass before anything is stored: the inputs schema, then the contract's optional
    `input_check` (e.g. polygon validity, which JSON Schema cannot say). InvalidInput otherwise."""
    contract.check_inputs(inputs)
    if contract.manifest.input_check:
        resolve(contract.manifest.input_check)(inputs)


def run_contract(contract: Contract, inputs: Mapping[str, Any], engine: Mapping[str, str]) -> dict[str, Any]:
    """The solver's outputs for `inputs` (InvalidInput for inputs it refuses; ContractViolation for outputs that
    break the contract). `engine` ({mode, name}) is passed to the solver for its outputs' metadata."""
    check_submission(contract, inputs)
    outputs = resolve(contract.manifest.solver)(inputs, dict(engine))
    if not isinstance(outputs, dict):
        raise ContractViolation(f"the solver of {contract.key} returned {type(outputs).__name__}, not an object")
    contract.check_outputs(outputs)
    return outputs


def derived_artifacts(contract: Contract, inputs: Mapping[str, Any],
                      outputs: Mapping[str, Any]) -> list[tuple[str, str, bytes]]:
    """The files the contract's `artifacts` function makes from inputs and (checked) outputs, as (name, media type,
    bytes); none without one. Run by the worker, whichever server solved."""
    if not contract.manifest.artifacts:
        return []
    return list(resolve(contract.manifest.artifacts)(inputs, outputs))
