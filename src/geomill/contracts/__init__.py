"""Versioned compute contracts: `<definition>/<version>/` folders with an inputs schema, an outputs schema and a
manifest naming the solver; loading, validation and running a solver under its contract (docs/contracts.md)."""

from geomill.contracts.catalog import Contracts, load_contracts
from geomill.contracts.model import Contract, ContractViolation, Manifest, UnknownContract, inputs_hash

__all__ = ["Contract", "ContractViolation", "Contracts", "Manifest", "UnknownContract", "inputs_hash",
           "load_contracts"]
