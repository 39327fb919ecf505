"""API keys: sent as `X-API-Key` (or `Authorization: Bearer`), stored as SHA-256 hashes, with scopes
read ⊂ submit ⊂ admin. 401: no key or an unknown/revoked one. 403: a valid key without the scope."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
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


class KeyCache:
    """Looked-up keys (and unknown ones) for `ttl` seconds, so a request does not cost a database round trip for
    its key. A key revoked by another process (`geomill api-key revoke`) is refused within `ttl` seconds."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> tuple[bool, Principal | None]:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key_hash: str, principal: Principal | None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude, bounded: a flood of random keys cannot grow memory
            self._entries[key_hash] = (time.monotonic() + self.ttl, principal)


def _lookup(store: Store, key_hash: str) -> Principal | None:
    found = store.api_key_by_hash(key_hash)
    if found is None or found["revoked"]:
        return None
    return Principal(found["key_id"], found["name"], tuple(found["scopes"]))


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
            principal = await run_in_threadpool(_lookup, state.runtime.store, key_hash)
            cache.put(key_hash, principal)
        if principal is None:
            raise ApiError(401, "Unauthorized", "unknown or revoked API key")
        if not principal.has(scope):
            raise ApiError(403, "Forbidden", f"this key has scopes {', '.join(principal.scopes)}; "
                           f"this operation needs '{scope}'")
        return principal

    return check
