"""API keys: created with scopes read ⊂ submit ⊂ admin, stored as SHA-256 hashes, revoked, listed, verified."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from geomill.domain import InvalidInput, NotFound
from geomill.engine.ports import Store

SCOPES = ("read", "submit", "admin")
_LEVEL = {scope: i for i, scope in enumerate(SCOPES)}


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
        raise InvalidInput(f"scopes must be among {', '.join(SCOPES)}; got {scopes}", field="scopes")
    key_id = secrets.token_hex(4)
    secret = f"gm_{key_id}_{secrets.token_urlsafe(32)}"
    store.create_api_key(key_id, name, hash_key(secret), scopes)
    return key_id, secret


def revoke_key(store: Store, key_id: str) -> None:
    """Revoke a key (requests with it are refused); NotFound when no active key has that id."""
    if not store.revoke_api_key(key_id):
        raise NotFound(f"no active key {key_id!r}")


def list_keys(store: Store) -> list[dict[str, Any]]:
    """Keys with their scopes and state, never their secrets."""
    return store.list_api_keys()


def lookup(store: Store, key_hash: str) -> Principal | None:
    """The principal of an active key with this hash, None for an unknown or revoked one."""
    found = store.api_key_by_hash(key_hash)
    if found is None or found["revoked"]:
        return None
    return Principal(found["key_id"], found["name"], tuple(found["scopes"]))


def verify(store: Store, secret: str) -> Principal | None:
    """The principal a presented secret authenticates, None when it authenticates nobody."""
    return lookup(store, hash_key(secret))


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
