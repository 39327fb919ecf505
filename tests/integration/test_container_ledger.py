"""The container ledger (`ObjectLedger`, table container_objects of migration 006) on SQLite and PostgreSQL: the
key ranges a sync's diff reads are in byte order on both (PostgreSQL's column is COLLATE "C"), paged, bounded,
per scope; records replace, forgets say whether they removed anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geomill.engine.context import LedgerEntry
from geomill.store import open_store
from geomill.store.base import SQLStore

# keys whose byte order differs from a locale's (punctuation, case, '/' against '-', non-ASCII)
KEYS = ["a-b.tif", "a/x.tif", "a_b.tif", "B.tif", "b.tif", "z/é.tif", "z/e.tif", "ab.tif", "a.tif"]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url)
    store.migrate()
    assert isinstance(store, SQLStore)
    yield store
    store.close()


def entry(key: str, version: str = "v1") -> LedgerEntry:
    return LedgerEntry(key, f"s3://h18c-bucket/in/{key}", version, f"item-{len(key)}", None)


def all_keys(ledger: SQLStore, scope: str, after: str = "", upto: str | None = None, page: int = 2) -> list[str]:
    keys: list[str] = []
    while rows := ledger.processed_range(scope, after, upto, page):
        assert len(rows) <= page
        keys += [r.key for r in rows]
        after = rows[-1].key
    return keys


def test_ranges_are_in_byte_order_paged_and_per_scope(ledger: SQLStore) -> None:
    for key in KEYS:
        ledger.record_processed("h18c:one", entry(key), "job-1")
    ledger.record_processed("h18c:two", entry("a-b.tif"), "job-1")
    assert all_keys(ledger, "h18c:one") == sorted(KEYS)  # Python's str order is UTF-8 byte order
    assert all_keys(ledger, "h18c:two") == ["a-b.tif"]
    assert all_keys(ledger, "h18c:one", after="a-b.tif", upto="ab.tif") == ["a.tif", "a/x.tif", "a_b.tif", "ab.tif"]
    assert all_keys(ledger, "h18c:one", after="b.tif") == ["z/e.tif", "z/é.tif"]


def test_record_replaces_and_forget_removes(ledger: SQLStore) -> None:
    ledger.record_processed("h18c:s", entry("x.tif", "v1"), "job-1")
    ledger.record_processed("h18c:s", LedgerEntry("x.tif", "s3://h18c-bucket/in/x.tif", "v2", "item", "silver://c.tif"),
                            "job-2")
    [row] = ledger.processed_range("h18c:s", "", None, 10)
    assert (row.version, row.item_id, row.cog_uri) == ("v2", "item", "silver://c.tif")
    assert ledger.forget_processed("h18c:s", "x.tif") is True
    assert ledger.forget_processed("h18c:s", "x.tif") is False
    assert ledger.processed_range("h18c:s", "", None, 10) == []
