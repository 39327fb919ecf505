"""API keys over HTTP: sent as `X-API-Key` (or `Authorization: Bearer`), or kept by the web console in an HttpOnly
session cookie, checked by `service.keys`. 401: no key or an unknown/revoked one. 403: a valid key without the
scope, or a state-changing request authenticated by the cookie without its CSRF token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

from geomill.api.errors import ApiError
from geomill.service.keys import ANONYMOUS_ADMIN, KeyCache, Principal, hash_key, lookup

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (geomill api-key create)")
SESSION_COOKIE = "geomill_session"  # the console's login: the API key itself, HttpOnly, SameSite=Strict
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(secret: str) -> str:
    """The CSRF token of a console session: derived from its key, so the server checks it without storing it and a
    page of another site, which cannot read the key, cannot make it."""
    return hmac.new(secret.encode(), b"geomill-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret), presented or "")


def _presented(request: Request, header_key: str | None) -> str | None:
    """The key sent with the request: a header, else the console's cookie (whose state-changing requests must carry
    the session's CSRF token in X-CSRF-Token, or are refused with 403)."""
    if header_key:
        return header_key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    if request.method not in SAFE_METHODS and not csrf_ok(cookie, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "Forbidden", f"a request authenticated by the console's cookie needs its CSRF token "
                       f"in the {CSRF_HEADER} header")
    return cookie


def _settings(request: Request) -> Any:
    """geomill's settings of the app serving `request` (a mounted app such as the STAC API keeps its own
    `state.settings` and holds geomill's as `state.geomill_settings`)."""
    state = request.app.state
    return getattr(state, "geomill_settings", None) or state.settings


async def principal_of(request: Request, secret: str) -> Principal | None:
    """Whom `secret` authenticates (None: nobody), from the cache or the store."""
    state = request.app.state
    key_hash = hash_key(secret)
    cache: KeyCache = state.key_cache
    hit, principal = cache.get(key_hash)
    if not hit:  # the database call runs in the thread pool: the event loop never blocks on it
        principal = await run_in_threadpool(lookup, state.runtime.store, key_hash)
        cache.put(key_hash, principal)
    return principal


async def optional_principal(request: Request) -> Principal | None:
    """The caller of an endpoint that needs no key (health): None when no valid key was sent. The header is read
    directly, not through the security scheme, so the OpenAPI document does not say the endpoint needs a key."""
    if _settings(request).auth_disabled:
        return ANONYMOUS_ADMIN
    secret = _presented(request, request.headers.get("x-api-key"))
    return await principal_of(request, secret) if secret else None


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a request whose key has `scope` (or a higher one)."""

    async def check(request: Request, header_key: str | None = Depends(api_key_header)) -> Principal:
        if _settings(request).auth_disabled:
            return ANONYMOUS_ADMIN
        secret = _presented(request, header_key)
        if not secret:
            raise ApiError(401, "Unauthorized", "send an API key in the X-API-Key header "
                           "(create one with `geomill api-key create`)")
        principal = await principal_of(request, secret)
        if principal is None:
            raise ApiError(401, "Unauthorized", "unknown or revoked API key")
        if not principal.has(scope):
            raise ApiError(403, "Forbidden", f"this key has scopes {', '.join(principal.scopes)}; "
                           f"this operation needs '{scope}'")
        return principal

    return check


__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "Principal", "csrf_ok", "csrf_token", "optional_principal",
           "principal_of", "require"]
