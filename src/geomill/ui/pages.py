"""The console's pages at /ui: login and logout, jobs, a job, submit, health, a map. The pages are Jinja2 shells; their
scripts read and act through the JSON API with the session cookie (and the CSRF token the page carries)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from geomill.api.auth import SESSION_COOKIE, Principal, csrf_ok, csrf_token, principal_of
from geomill.service.keys import ANONYMOUS_ADMIN

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)
LOGIN_CSRF_COOKIE = "geomill_login_csrf"  # double-submit token of the login form (there is no session yet)
PAGES = {"jobs": "Jobs", "submit": "Submit", "health": "Health", "map": "Map"}


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page, and the CSRF token its scripts send with every state-changing call."""

    principal: Principal
    csrf: str

    def can(self, scope: str) -> bool:
        return self.principal.has(scope)


async def _viewer(request: Request) -> Viewer | None:
    if request.app.state.settings.auth_disabled:
        return Viewer(ANONYMOUS_ADMIN, "")
    secret = request.cookies.get(SESSION_COOKIE)
    principal = await principal_of(request, secret) if secret else None
    return Viewer(principal, csrf_token(secret)) if principal and secret else None


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path[len(_root(request)):] + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{_root(request)}/ui/login?next={quote(here)}", status_code=303)


def _page(request: Request, viewer: Viewer, template: str, **context: Any) -> HTMLResponse:
    root = _root(request)
    return templates.TemplateResponse(request, template, {
        "root": root, "ui": f"{root}/ui", "viewer": viewer, "pages": PAGES,
        "auth": not request.app.state.settings.auth_disabled, **context})


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui") -> Response:
    return _login_page(request, next, error=None, status=200)


def _login_page(request: Request, next_url: str, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    root = _root(request)
    response = templates.TemplateResponse(request, "login.html", {
        "root": root, "ui": f"{root}/ui", "viewer": None, "pages": {}, "auth": True, "next": _safe_next(next_url),
        "login_csrf": token, "error": error}, status_code=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_https(request),
                        path=f"{root}/ui/login")
    return response


def _safe_next(next_url: str) -> str:
    """Only a console page: never another site (an open redirect)."""
    return next_url if next_url.startswith("/ui") and not next_url.startswith("//") else "/ui"


def _https(request: Request) -> bool:
    public = request.app.state.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


async def _form(request: Request) -> dict[str, str]:
    """An url-encoded form (the login form is the console's only one), without python-multipart."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key; keep it in an HttpOnly, SameSite=Strict cookie (Secure over https)."""
    form = await _form(request)
    next_url = _safe_next(form.get("next", "/ui"))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _login_page(request, next_url, "the form expired or came from another site: try again", 403)
    key = form.get("key", "").strip()
    principal = await principal_of(request, key) if key else None
    if principal is None:
        return _login_page(request, next_url, "unknown or revoked API key", 401)
    response = RedirectResponse(_root(request) + next_url, status_code=303)
    response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="strict", secure=_https(request),
                        path=_root(request) or "/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{_root(request)}/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    form = await _form(request)
    if secret and not csrf_ok(secret, form.get("csrf")):
        return Response("missing or wrong CSRF token", status_code=403)
    response = RedirectResponse(f"{_root(request)}/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_root(request) or "/")
    return response


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request) -> Response:
    viewer = await _viewer(request)
    return _page(request, viewer, "jobs.html", page="jobs") if viewer else _to_login(request)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _to_login(request)
    return _page(request, viewer, "job.html", page="jobs", job_id=job_id)


@router.get("/submit", response_class=HTMLResponse)
async def submit_page(request: Request) -> Response:
    viewer = await _viewer(request)
    return _page(request, viewer, "submit.html", page="submit") if viewer else _to_login(request)


@router.get("/health", response_class=HTMLResponse)
async def health_page(request: Request) -> Response:
    viewer = await _viewer(request)
    return _page(request, viewer, "health.html", page="health") if viewer else _to_login(request)


@router.get("/map", response_class=HTMLResponse)
async def map_page(request: Request, job: str = "") -> Response:
    viewer = await _viewer(request)
    return _page(request, viewer, "map.html", page="map", job_id=job) if viewer else _to_login(request)


__all__ = ["STATIC_DIR", "router"]
