"""Offline STAC validation: pystac's core schemas plus the extension schemas shipped in ``catalog/schemas``.

pystac fetches extension schemas from the web when it validates; this module puts the shipped copies (and PROJ's
PROJJSON v0.7 schema, when the rasterio wheel carries it) in the validator's schema cache, so nothing is fetched.
Known gap: an item using ``proj:projjson`` with projection v1.1.0 refers to PROJJSON v0.5, which is not shipped;
validating it raises TaskError instead of going to the network (rio-stac writes ``proj:projjson`` only when a CRS
has neither an EPSG code nor a WKT2 form).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import pystac
import pystac.validation
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator
from referencing.exceptions import Unresolvable

from geomill.domain import InvalidInput, TaskError

logger = logging.getLogger(__name__)

SCHEMAS_PACKAGE = "geomill.catalog"


class StacValidationFailed(InvalidInput):
    """A STAC document does not validate against the core or an extension schema."""

    def __init__(self, message: str, *, href: str | None, errors: list[str]) -> None:
        super().__init__(message)
        self.href = href
        self.schema_errors = errors  # not `errors`: that holds per-field errors of InvalidInput (API 422 bodies)


def _schema_files() -> list[Traversable]:
    """The shipped ``<extension>/<version>/schema.json`` files."""
    root = resources.files(SCHEMAS_PACKAGE).joinpath("schemas")
    return [
        version.joinpath("schema.json")
        for extension in root.iterdir() if extension.is_dir()
        for version in extension.iterdir() if version.joinpath("schema.json").is_file()
    ]


def _projjson_schema() -> dict[str, Any] | None:
    """PROJ's PROJJSON schema from the rasterio wheel, referenced by the projection extension."""
    import rasterio

    path = Path(rasterio.__file__).parent / "proj_data" / "projjson.schema.json"
    return json.loads(path.read_text()) if path.is_file() else None


def offline_schemas() -> dict[str, dict[str, Any]]:
    """Every shipped schema keyed by its ``$id`` without a trailing ``#``."""
    schemas = [json.loads(f.read_text(encoding="utf-8")) for f in _schema_files()]
    projjson = _projjson_schema()
    if projjson is not None:
        schemas.append(projjson)
    return {s["$id"].rstrip("#"): s for s in schemas}


class CompiledValidator(JsonSchemaSTACValidator):
    """pystac's validator with one compiled jsonschema validator per schema: pystac re-checks the schema and
    rebuilds its reference registry on every call, which made validation most of a STAC task's time. The errors
    and messages are pystac's own."""

    def __init__(self) -> None:
        super().__init__()
        self._compiled: dict[str, Any] = {}

    def _validate_from_uri(self, stac_dict: dict[str, Any], stac_object_type: Any, schema_uri: str,
                           href: str | None = None) -> None:
        validator = self._compiled.get(schema_uri)
        if validator is None:
            schema = self._get_schema(schema_uri)
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            validator = self._compiled[schema_uri] = cls(schema, registry=self.registry)
        errors = list(validator.iter_errors(stac_dict))
        if errors:
            where = f"at {href} " if href is not None else ""
            stac_id = stac_dict.get("id")
            ident = f"with ID {stac_id} " if stac_id is not None else ""
            best = jsonschema.exceptions.best_match(errors)
            msg = f"Validation failed for {stac_object_type} {where}{ident}against schema at {schema_uri}"
            raise pystac.STACValidationError(msg + (f"\n{best}" if best else ""), source=errors) from best


@lru_cache(maxsize=1)
def offline_validator() -> JsonSchemaSTACValidator:
    """A validator whose schema cache holds pystac's core schemas and the shipped extension schemas."""
    validator = CompiledValidator()
    validator.schema_cache.update(offline_schemas())
    return validator


def install_offline_validator() -> JsonSchemaSTACValidator:
    """Make pystac's own ``validate()`` calls work offline; safe to call more than once."""
    validator = offline_validator()
    pystac.validation.set_validator(validator)
    return validator


def validate_item_dict(item: dict[str, Any], href: str | None = None) -> list[str]:
    """Validate a STAC dict (item or collection) offline; return the schema URIs checked, raise StacValidationFailed if invalid."""
    where = href or item.get("id", "<item>")
    try:
        return pystac.validation.validate_dict(item, href=href, validator=offline_validator())
    except pystac.STACValidationError as exc:
        errors = [getattr(e, "message", str(e)) for e in exc.source] if isinstance(exc.source, list) else []
        kind = item.get("type", "document")
        raise StacValidationFailed(f"STAC {kind} {where} is invalid: {exc}", href=href, errors=errors) from exc
    except (GetSchemaError, Unresolvable) as exc:
        raise TaskError(
            f"cannot validate STAC item {where} offline: it uses a schema geomill does not ship ({exc}); "
            "add that schema to geomill/catalog/schemas"
        ) from exc


def validate_item_file(path: str | Path) -> list[str]:
    """Validate the STAC item JSON file at `path` offline (core and extensions); raise InvalidInput if invalid."""
    file = Path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read STAC item {file}: {exc}") from exc
    return validate_item_dict(doc, href=str(file))
