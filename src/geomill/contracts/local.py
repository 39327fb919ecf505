"""Solving in the worker process (no GEOMILL_APPSERVER_URL)."""

from __future__ import annotations

from typing import Any

from geomill.contracts.catalog import Contracts
from geomill.contracts.runner import derived_artifacts, run_contract

ENGINE = {"mode": "in_process", "name": "geomill"}


class LocalSolver:
    """The Solver resource that runs a contract's solver here, under its contract."""

    mode = "in_process"

    def __init__(self, contracts: Contracts) -> None:
        self.contracts = contracts

    def solve(self, definition: str, version: str, inputs: dict[str, Any]) -> dict[str, Any]:
        return run_contract(self.contracts.get(definition, version), inputs, ENGINE)

    def contract_digest(self, definition: str, version: str) -> str:
        return self.contracts.get(definition, version).digest

    def artifacts(self, definition: str, version: str, inputs: dict[str, Any],
                  outputs: dict[str, Any]) -> list[tuple[str, str, bytes]]:
        return derived_artifacts(self.contracts.get(definition, version), inputs, outputs)
