"""API keys: sent as `X-API-Key` (or `Authorization: Bearer`), stored as SHA-256 hashes, with scopes
read ⊂ submit ⊂ admin. 401: no key or an unknown/revoked one. 403: a valid key without the scope."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from geomill.api.errors import ApiError
from geomill.engine.ports import Store

SCOPES = ("read", "submit", "admin")
_LEVEL = {scope: i for i, scope in enumerate(SCOPES)}
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (geomill api-key create)")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: tuple[str, ...]

    def has(self, scope: str) -> bool:
        return any(_LEVEL[s] >= _LEVEL[scope] for s in self.scopes if s in _LEVEL)


ANONYMOUS_ADMIN = Principal("auth-disabled", "auth disabled", ("admin",))


def hash_key(secret: str) -> str:
    """Keys are 256-bit random secrets, so a plain SHA-256 is enough (no dictionary to guess from)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, name: str, scopes: list[str]) -> tuple[str, str]:
    """A new key: (key_id, the secret, shown once)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ApiError(422, "Invalid input", f"scopes must be among {', '.join(SCOPES)}; got {scopes}")
    key_id = secrets.token_hex(4)
    secret = f"gm_{key_id}_{secrets.token_urlsafe(32)}"
    store.create_api_key(key_id, name, hash_key(secret), scopes)
    return key_id, secret


def _presented(request: Request, header_key: str | None) -> str | None:
    if header_key:
        return header_key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits a request whose key has `scope` (or a higher one)."""

    def check(request: Request, header_key: str | None = Depends(api_key_header)) -> Principal:
        if request.app.state.settings.auth_disabled:
            return ANONYMOUS_ADMIN
        secret = _presented(request, header_key)
        if not secret:
            raise ApiError(401, "Unauthorized", "send an API key in the X-API-Key header "
                           "(create one with `geomill api-key create`)")
        found = request.app.state.runtime.store.api_key_by_hash(hash_key(secret))
        if found is None or found["revoked"]:
            raise ApiError(401, "Unauthorized", "unknown or revoked API key")
        principal = Principal(found["key_id"], found["name"], tuple(found["scopes"]))
        if not principal.has(scope):
            raise ApiError(403, "Forbidden", f"this key has scopes {', '.join(principal.scopes)}; "
                           f"this operation needs '{scope}'")
        return principal

    return check
