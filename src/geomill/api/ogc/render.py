"""JSON or HTML for the same document: ``?f=json|html`` first, else the Accept header (HTML only when the client
prefers it to JSON, as browsers do); HTML from the Jinja2 templates next to this module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import Response

from geomill.api.errors import ApiError
from geomill.api.ogc import vocabulary as v

_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _quality(accept: str) -> dict[str, float]:
    """Media type -> q of an Accept header."""
    found: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media:
            found[media.lower()] = q
    return found


def wants_html(request: Request) -> bool:
    """True for ``?f=html`` or an Accept that ranks text/html above JSON; ApiError 400 for another ``f``."""
    f = request.query_params.get("f")
    if f is not None:
        if f not in ("json", "html"):
            raise ApiError(400, "Bad request", f"f: json or html, not {f!r}", errors=[
                {"field": "query.f", "message": "json or html"}])
        return f == "html"
    q = _quality(request.headers.get("accept", ""))
    html = q.get(v.HTML, 0.0)
    json_q = max(q.get(v.JSON, 0.0), q.get("application/*", 0.0), q.get("*/*", 0.0) - 0.001)
    return html > 0 and html >= json_q


def respond(request: Request, doc: dict[str, Any], template: str, status_code: int = 200,
            headers: dict[str, str] | None = None, **context: Any) -> Response:
    """`doc` as JSON, or rendered with `template` (which sees it as ``doc``)."""
    if wants_html(request):
        page = _TEMPLATES.get_template(template).render(doc=doc, **context)
        return HTMLResponse(page, status_code=status_code, headers=headers)
    return JSONResponse(doc, status_code=status_code, headers=headers)
