"""One contract: its manifest, its two JSON Schemas (compiled once) and the checks made with them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geomill.domain import InvalidInput, NotFound, PermanentError, RegistryError, canonical_json

NAME = r"^[a-z][a-z0-9_-]{0,63}$"
VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+$"
FILES = ("manifest.json", "inputs.schema.json", "outputs.schema.json")


class ContractViolation(PermanentError):
    """A solver answered with outputs its contract does not allow: failed at once, never retried."""


class UnknownContract(NotFound):
    """No contract of that definition and version is loaded."""

    def __init__(self, definition: str, version: str, known: list[str]) -> None:
        super().__init__(f"no contract {definition} {version}; known contracts: {', '.join(known) or 'none'}")
        self.known = known


class Manifest(BaseModel):
    """`manifest.json`: who solves the contract, how long it may take, what it is for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    definition: str = Field(pattern=NAME)
    version: str = Field(pattern=VERSION)
    description: str = Field(min_length=1, max_length=2000)
    solver: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="'module:function' in Python")
    timeout_seconds: float = Field(60.0, gt=0, le=3600)
    input_check: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                                    description="optional 'module:function' run at submit (e.g. polygon validity)")
    artifacts: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                                  description="optional 'module:function' (inputs, outputs) -> files kept beside "
                                              "the outputs, as [(name, media type, bytes)]")


def _field(path: Any) -> str:
    return ".".join(["inputs", *(str(p) for p in path)])


@dataclass(frozen=True)
class Contract:
    """A loaded contract. `digest` (sha256 of its three files) is recorded with every result."""

    manifest: Manifest
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    path: Path
    digest: str
    _inputs: Any = field(repr=False, compare=False)  # jsonschema validators, compiled once
    _outputs: Any = field(repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.manifest.definition}:{self.manifest.version}"

    def check_inputs(self, inputs: Any) -> None:
        """InvalidInput with one error per failing field (``inputs.parcel.coordinates``) unless `inputs` conform."""
        errors = sorted(self._inputs.iter_errors(inputs), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            found = [{"field": _field(e.absolute_path), "message": e.message[:500]} for e in errors[:50]]
            raise InvalidInput(f"inputs do not conform to {self.key}: "
                               + "; ".join(f"{e['field']}: {e['message']}" for e in found[:5]), errors=found)

    def check_outputs(self, outputs: Any) -> None:
        """ContractViolation naming what is wrong unless `outputs` conform to the outputs schema."""
        errors = sorted(self._outputs.iter_errors(outputs), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            what = "; ".join(f"{'.'.join(['outputs', *(str(p) for p in e.absolute_path)])}: {e.message[:300]}"
                             for e in errors[:5])
            raise ContractViolation(f"the solver of {self.key} broke its contract: {what}")

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {"definition": m.definition, "version": m.version, "description": m.description,
                "timeout_seconds": m.timeout_seconds, "sha256": self.digest}


def inputs_hash(definition: str, version: str, inputs: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of {definition, version, inputs}: a job's id (equal requests, one job)."""
    doc = {"definition": definition, "version": version, "inputs": inputs}
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def read_contract(folder: Path) -> Contract:
    """The contract in `folder` (``.../<definition>/<version>``); RegistryError naming the file and the fault."""
    from jsonschema import Draft202012Validator  # imported here: the CLI and the API start without it
    from jsonschema.exceptions import SchemaError

    texts: dict[str, str] = {}
    for name in FILES:
        try:
            texts[name] = (folder / name).read_text()
        except OSError as exc:
            raise RegistryError(f"contract {folder}: cannot read {name}: {exc}") from exc
    docs: dict[str, Any] = {}
    for name, text in texts.items():
        try:
            docs[name] = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"contract {folder / name}: not JSON: {exc}") from exc
    try:
        manifest = Manifest.model_validate(docs["manifest.json"])
    except ValidationError as exc:
        raise RegistryError(f"contract {folder / 'manifest.json'}: {exc}") from exc
    if (folder.parent.name, folder.name) != (manifest.definition, manifest.version):
        raise RegistryError(f"contract {folder}: the manifest says {manifest.definition} {manifest.version}; "
                            "the folder must be <definition>/<version>")
    validators = []
    for name in FILES[1:]:
        try:
            Draft202012Validator.check_schema(docs[name])
        except SchemaError as exc:
            raise RegistryError(f"contract {folder / name}: not a valid JSON Schema: {exc.message}") from exc
        validators.append(Draft202012Validator(docs[name]))
    digest = hashlib.sha256(canonical_json([docs[n] for n in FILES]).encode()).hexdigest()
    return Contract(manifest, docs["inputs.schema.json"], docs["outputs.schema.json"], folder, digest,
                    validators[0], validators[1])
