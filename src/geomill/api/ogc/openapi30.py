"""The OpenAPI 3.0 document of the OGC routes (the conformance class asks for 3.0; FastAPI writes 3.1): FastAPI's
document of those routes with the few 3.1 forms it uses rewritten (`anyOf` with null -> `nullable`, `examples`
-> `example`, `const` -> `enum`, numeric `exclusiveMinimum`/`exclusiveMaximum` -> booleans)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute


def to_30(node: Any) -> Any:
    """`node` with 3.1-only schema forms rewritten as 3.0 ones."""
    if isinstance(node, list):
        return [to_30(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_30(val) for k, val in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        out.pop("anyOf")
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if isinstance(out.get("examples"), list) and "in" not in out:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[plain], out[bound] = out[bound], True
    return out


def document(routes: Sequence[BaseRoute], *, version: str, secured: bool) -> dict[str, Any]:
    schema = get_openapi(title="geomill OGC API - Processes", version=version, openapi_version="3.0.3",
                         description="OGC API - Processes - Part 1: Core, over geomill's job types (docs/ogc.md).",
                         routes=list(routes))
    schema = to_30(schema)
    if not secured:
        schema.get("components", {}).pop("securitySchemes", None)
        for operation in (op for ops in schema["paths"].values() for op in ops.values()):
            operation.pop("security", None)
    return schema
