"""Compute contracts: loading (shipped, extra folder, two versions side by side, broken or duplicate ones refused at
start-up), input validation with one error per field, the inputs hash, and outputs checked after the solve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from compute_helpers import SAMPLE_INPUTS
from geomill.contracts import ContractViolation, UnknownContract, inputs_hash, load_contracts
from geomill.contracts.catalog import SHIPPED
from geomill.contracts.runner import check_submission, run_contract
from geomill.domain import InvalidInput, RegistryError

ENGINE = {"mode": "in_process", "name": "test"}


def write_contract(root: Path, definition: str, version: str, solver: str, **manifest: Any) -> Path:
    folder = root / definition / version
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "definition": definition, "version": version, "description": "test contract", "solver": solver,
        **manifest}))
    (folder / "inputs.schema.json").write_text(json.dumps({
        "type": "object", "required": ["text"], "additionalProperties": False,
        "properties": {"text": {"type": "string", "maxLength": 10}}}))
    (folder / "outputs.schema.json").write_text(json.dumps({
        "type": "object", "required": ["echo"], "properties": {"echo": {"type": "string"}}}))
    return folder


def test_sitefit_1_0_0_is_shipped_and_described() -> None:
    contracts = load_contracts()
    sitefit = contracts.get("sitefit", "1.0.0")
    assert contracts.keys() == ["sitefit:1.0.0"]
    assert sitefit.manifest.solver == "geomill.solvers.sitefit:solve"
    assert sitefit.describe()["sha256"] == load_contracts().get("sitefit", "1.0.0").digest  # stable digest
    assert len(sitefit.digest) == 64


def test_two_versions_of_one_definition_coexist(tmp_path: Path) -> None:
    """A new version is a new folder: both answer, each with its own schema and digest."""
    newer = tmp_path / "sitefit" / "1.1.0"
    shutil.copytree(SHIPPED / "sitefit" / "1.0.0", newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "version": "1.1.0", "timeout_seconds": 5}))
    contracts = load_contracts(tmp_path)
    assert contracts.keys() == ["sitefit:1.0.0", "sitefit:1.1.0"]
    assert contracts.get("sitefit", "1.1.0").manifest.timeout_seconds == 5
    assert contracts.get("sitefit", "1.0.0").manifest.timeout_seconds == 60
    assert contracts.get("sitefit", "1.1.0").digest != contracts.get("sitefit", "1.0.0").digest


def test_a_version_defined_twice_is_refused_at_load(tmp_path: Path) -> None:
    """Versions are immutable: an extra folder may not redefine a shipped one."""
    shutil.copytree(SHIPPED / "sitefit" / "1.0.0", tmp_path / "sitefit" / "1.0.0")
    with pytest.raises(RegistryError, match="sitefit:1.0.0 is defined twice"):
        load_contracts(tmp_path)


@pytest.mark.parametrize("fault, expected", [
    ("folder", "the folder must be <definition>/<version>"),
    ("schema", "not a valid JSON Schema"),
    ("json", "not JSON"),
    ("manifest", "manifest.json"),
])
def test_broken_contracts_are_refused_naming_the_file(tmp_path: Path, fault: str, expected: str) -> None:
    folder = write_contract(tmp_path, "echo", "1.0.0", "plugins.contract_solvers:echo")
    if fault == "folder":
        folder.rename(tmp_path / "echo" / "2.0.0")
    elif fault == "schema":
        (folder / "outputs.schema.json").write_text(json.dumps({"type": "no-such-type"}))
    elif fault == "json":
        (folder / "inputs.schema.json").write_text("{not json")
    else:
        (folder / "manifest.json").write_text(json.dumps({"definition": "echo", "version": "1.0.0"}))
    with pytest.raises(RegistryError, match=expected):
        load_contracts(tmp_path)


def test_inputs_are_refused_with_one_error_per_field() -> None:
    sitefit = load_contracts().get("sitefit", "1.0.0")
    bad = {**SAMPLE_INPUTS, "setback": -1, "rotation_step": "15", "colour": "red"}
    bad["parcel"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}
    with pytest.raises(InvalidInput) as caught:
        sitefit.check_inputs(bad)
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"inputs", "inputs.parcel.coordinates.0", "inputs.rotation_step", "inputs.setback"}, fields
    assert any("colour" in e["message"] for e in caught.value.errors)


def test_a_self_intersecting_parcel_is_refused_at_submit_by_the_input_check() -> None:
    """Schema-valid but a bow tie: the contract's input_check refuses it with shapely's reason."""
    sitefit = load_contracts().get("sitefit", "1.0.0")
    bow_tie = {**SAMPLE_INPUTS, "parcel": {"type": "Polygon",
                                          "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}}
    sitefit.check_inputs(bow_tie)
    with pytest.raises(InvalidInput, match=r"parcel: invalid polygon: Self-intersection\[5 5\]"):
        check_submission(sitefit, bow_tie)


def test_unknown_contract_names_the_known_ones() -> None:
    with pytest.raises(UnknownContract, match="known contracts: sitefit:1.0.0"):
        load_contracts().get("sitefit", "9.9.9")


def test_inputs_hash_is_canonical() -> None:
    """Key order and whitespace do not matter; the definition, version and every input value do."""
    reordered = json.loads(json.dumps(dict(reversed(list(SAMPLE_INPUTS.items())))))
    assert inputs_hash("sitefit", "1.0.0", SAMPLE_INPUTS) == inputs_hash("sitefit", "1.0.0", reordered)
    assert inputs_hash("sitefit", "1.0.0", SAMPLE_INPUTS) != inputs_hash("sitefit", "1.1.0", SAMPLE_INPUTS)
    assert inputs_hash("sitefit", "1.0.0", SAMPLE_INPUTS) != inputs_hash("sitefit", "1.0.0",
                                                                        {**SAMPLE_INPUTS, "seed": 998})


def test_outputs_that_break_the_contract_are_a_contract_violation(tmp_path: Path) -> None:
    write_contract(tmp_path, "echo", "1.0.0", "plugins.contract_solvers:echo")
    write_contract(tmp_path, "broken", "1.0.0", "plugins.contract_solvers:broken")
    contracts = load_contracts(tmp_path)
    assert run_contract(contracts.get("echo", "1.0.0"), {"text": "hi"}, ENGINE)["echo"] == "hi"
    with pytest.raises(ContractViolation, match="outputs.echo: 42 is not of type 'string'"):
        run_contract(contracts.get("broken", "1.0.0"), {"text": "hi"}, ENGINE)
    with pytest.raises(InvalidInput, match="inputs.text"):
        run_contract(contracts.get("echo", "1.0.0"), {"text": "far too long"}, ENGINE)
