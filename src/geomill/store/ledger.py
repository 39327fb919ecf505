"""The container ledger both SQL stores share: what sync_container processed, per scope and object key.

Mixed into `SQLStore` (like `ServiceState`); a worker hands its store to task handlers as the narrow
`ObjectLedger` port of `engine/context.py`, never as the store. Statements are written once with ``:name``
parameters and converted for PostgreSQL with `pyformat`.
"""

from __future__ import annotations

from typing import Any

from geomill.engine.context import LedgerEntry
from geomill.store.access import StatementAccess
from geomill.store.common_queries import pyformat

_COLUMNS = "key, uri, version, item_id, cog_uri"
_RANGE = f"SELECT {_COLUMNS} FROM container_objects WHERE scope = :scope AND key > :after"
SQLITE = {
    "record": (
        "INSERT INTO container_objects (scope, key, uri, version, item_id, cog_uri, job_id, updated_at) "
        "VALUES (:scope, :key, :uri, :version, :item_id, :cog_uri, :job_id, :now) "
        "ON CONFLICT (scope, key) DO UPDATE SET uri = excluded.uri, version = excluded.version, "
        "item_id = excluded.item_id, cog_uri = excluded.cog_uri, job_id = excluded.job_id, "
        "updated_at = excluded.updated_at"),
    "range_upto": f"{_RANGE} AND key <= :upto ORDER BY key LIMIT :limit",
    "range_open": f"{_RANGE} ORDER BY key LIMIT :limit",
    "forget": "DELETE FROM container_objects WHERE scope = :scope AND key = :key",
}
POSTGRES = {name: pyformat(sql) for name, sql in SQLITE.items()}


class ContainerLedger(StatementAccess):
    """The `ObjectLedger` port over the store's `_read`/`_write` (one statement, its own transaction)."""

    dialect: str

    def _ledger_sql(self, name: str) -> str:
        return (POSTGRES if self.dialect == "postgres" else SQLITE)[name]

    def processed_range(self, scope: str, after: str, upto: str | None, limit: int) -> list[LedgerEntry]:
        """The entries of `scope` whose key is > `after` and <= `upto` (None: no upper bound), by key (byte
        order), at most `limit`: a caller pages with the last key it got as the next `after`."""
        args: dict[str, Any] = {"scope": scope, "after": after, "limit": int(limit)}
        if upto is not None:
            args["upto"] = upto
        rows = self._read(self._ledger_sql("range_open" if upto is None else "range_upto"), args)
        return [LedgerEntry(r["key"], r["uri"], r["version"], r["item_id"], r["cog_uri"]) for r in rows]

    def record_processed(self, scope: str, entry: LedgerEntry, job_id: str) -> None:
        """Insert or replace the entry of (`scope`, `entry.key`)."""
        self._write(self._ledger_sql("record"), {
            "scope": scope, "key": entry.key, "uri": entry.uri, "version": entry.version, "item_id": entry.item_id,
            "cog_uri": entry.cog_uri, "job_id": job_id, "now": self._since(0.0)}, "record_processed")

    def forget_processed(self, scope: str, key: str) -> bool:
        """Remove the entry of (`scope`, `key`); False when there was none."""
        return self._write(self._ledger_sql("forget"), {"scope": scope, "key": key}, "forget_processed") == 1
