"""API keys over HTTP: sent as `X-API-Key` (or `Authorization: Bearer`), checked by `service.keys`. 401: no key or
an unknown/revoked one. 403: a valid key without the scope."""

from __future__ import annotations

from collections.abc import Callable

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


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits a request whose key has `scope` (or a higher one)."""

    async def check(request: Request, header_key: str | None = Depends(api_key_header)) -> Principal:
        state = request.app.state
        if state.settings.auth_disabled:
            return ANONYMOUS_ADMIN
        secret = _presented(request, header_key)
        if not secret:
            raise ApiError(401, "Unauthorized", "send an API key in the X-API-Key header "
                           "(create one with `geomill api-key create`)")
        key_hash = hash_key(secret)
        cache: KeyCache = state.key_cache
        hit, principal = cache.get(key_hash)
        if not hit:  # the database call runs in the thread pool: the event loop never blocks on it
            principal = await run_in_threadpool(lookup, state.runtime.store, key_hash)
            cache.put(key_hash, principal)
        if principal is None:
            raise ApiError(401, "Unauthorized", "unknown or revoked API key")
        if not principal.has(scope):
            raise ApiError(403, "Forbidden", f"this key has scopes {', '.join(principal.scopes)}; "
                           f"this operation needs '{scope}'")
        return principal

    return check


__all__ = ["Principal", "require"]
