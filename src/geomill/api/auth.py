"""API keys over HTTP: sent as `X-API-Key` (or `Authorization: Bearer`), checked by `service.keys`. 401: no key or
an unknown/revoked one. 403: a valid key without the scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

from geomill.api.errors import ApiError
from geomill.service.keys import ANONYMOUS_ADMIN, KeyCache, Principal, hash_key, lookup

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (geomill api-key create)")


def _presented(request: Request, header_key: str | None) -> str | None:
    if header_key:
        return header_key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _settings(request: Request) -> Any:
    """geomill's settings of the app serving `request` (a mounted app such as the STAC API keeps its own
    `state.settings` and holds geomill's as `state.geomill_settings`)."""
    state = request.app.state
    return getattr(state, "geomill_settings", None) or state.settings


async def _principal(request: Request, secret: str) -> Principal | None:
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
    return await _principal(request, secret) if secret else None


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a request whose key has `scope` (or a higher one)."""

    async def check(request: Request, header_key: str | None = Depends(api_key_header)) -> Principal:
        if _settings(request).auth_disabled:
            return ANONYMOUS_ADMIN
        secret = _presented(request, header_key)
        if not secret:
            raise ApiError(401, "Unauthorized", "send an API key in the X-API-Key header "
                           "(create one with `geomill api-key create`)")
        principal = await _principal(request, secret)
        if principal is None:
            raise ApiError(401, "Unauthorized", "unknown or revoked API key")
        if not principal.has(scope):
            raise ApiError(403, "Forbidden", f"this key has scopes {', '.join(principal.scopes)}; "
                           f"this operation needs '{scope}'")
        return principal

    return check


__all__ = ["Principal", "optional_principal", "require"]
