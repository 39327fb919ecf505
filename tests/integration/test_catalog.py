"""The catalog protocol on both backends: static files (embedded) and pgSTAC (PostgreSQL), upsert semantics."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pystac
import pytest

from geomill.catalog.base import open_catalog
from geomill.catalog.pgstac import PGSTAC_VERSION, ensure_pgstac, installed_version
from geomill.catalog.validation import validate_item_dict
from geomill.storage import LocalStorage
from procs import cli, geomill_env

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "geomill" / "examples" / "data" / "shade.tif"


def _item(item_id: str, x: float, when: str = "2020-01-01T00:00:00Z") -> dict[str, Any]:
    ring = [[x, 0.0], [x + 1, 0.0], [x + 1, 1.0], [x, 1.0], [x, 0.0]]
    return {
        "type": "Feature", "stac_version": pystac.get_stac_version(), "stac_extensions": [], "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [ring]}, "bbox": [x, 0.0, x + 1, 1.0],
        "properties": {"datetime": when}, "links": [],
        "assets": {"data": {"href": f"../../../cogs/{item_id}.tif", "type": "image/tiff"}},
    }


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    s = LocalStorage(tmp_path / "data")
    s.ensure_zones()
    return s


def _check_protocol(catalog: Any) -> None:
    catalog.upsert_items([_item("a", 0.0), _item("b", 5.0, "2021-06-01T00:00:00Z")], "scenes")
    catalog.upsert_items([_item("a", 0.0)], "scenes")  # again: replaces, never duplicates
    assert sorted(i["id"] for i in catalog.list_items("scenes")) == ["a", "b"]
    collection = catalog.get_collection("scenes")
    assert collection["extent"]["spatial"]["bbox"][0] == [0.0, 0.0, 6.0, 1.0]  # grown to cover both items
    assert collection["extent"]["temporal"]["interval"][0][0].startswith("2020-01-01")
    assert catalog.get_item("b")["bbox"] == [5.0, 0.0, 6.0, 1.0]
    assert catalog.get_item("missing") is None
    # a collection written with its own description/assets keeps its items
    collection["description"] = "updated"
    collection["assets"] = {"mosaic": {"href": "../../mosaics/m.json", "type": "application/json"}}
    catalog.upsert_collection(collection)
    assert catalog.get_collection("scenes")["description"] == "updated"
    assert sorted(i["id"] for i in catalog.list_items("scenes")) == ["a", "b"]
    assert [c["id"] for c in catalog.list_collections()] == ["scenes"]
    for doc in (catalog.get_item("a"), catalog.get_collection("scenes")):
        validate_item_dict(doc)


def test_static_catalog_protocol(storage: LocalStorage) -> None:
    catalog = open_catalog(storage, "sqlite:///x.db")
    assert catalog.backend == "static"
    _check_protocol(catalog)
    root = storage.local_path("silver://catalog")
    item = json.loads((root / "scenes" / "a" / "a.json").read_text())
    assert item["assets"]["data"]["href"] == "../../../cogs/a.tif"  # relative: the folder can be copied as is


def test_pgstac_catalog_protocol(storage: LocalStorage, pg_url: str) -> None:
    catalog = open_catalog(storage, pg_url)
    assert catalog.backend == "pgstac+static"
    _check_protocol(catalog)
    with psycopg.connect(pg_url) as con:
        rows = con.execute("SELECT id, content->'assets'->'data'->>'href' FROM pgstac.items ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["a", "b"]
        cogs = storage.local_path("silver://cogs")
        assert rows[0][1] == str(cogs / "a.tif")  # relative hrefs made absolute for the database
        assert con.execute("SELECT count(*) FROM pgstac.collections").fetchone()[0] == 1
        assert con.execute("SELECT content->>'description' FROM pgstac.collections").fetchone()[0] == "updated"
    # the static copy holds the same documents
    static = open_catalog(storage, None)
    assert sorted(i["id"] for i in static.list_items("scenes")) == ["a", "b"]


def _ensure(url: str) -> str | None:
    ensure_pgstac(url)
    return installed_version(url)


def test_pgstac_installed_once_by_concurrent_processes(pg_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        versions = pool.map(_ensure, [pg_url] * 3)
    assert versions == [PGSTAC_VERSION] * 3
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM pgstac.migrations").fetchone()[0] == 1


def test_process_raster_lands_in_pgstac_and_catalog_cli_shows_it(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "in" / "shade.tif"
    source.parent.mkdir()
    shutil.copy(SAMPLE, source)
    env = geomill_env(tmp_path / "data", pg_url, workers=1)
    upgraded = cli(env, "db", "upgrade", "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["pgstac_version"] == PGSTAC_VERSION
    for _ in range(2):  # a forced re-run updates the item, never duplicates it
        run = cli(env, "run", "process_raster", "-p", f"source={source}", "--force", "--json", timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
    with psycopg.connect(pg_url) as con:
        items = con.execute("SELECT id, collection FROM pgstac.items").fetchall()
    assert len(items) == 1 and items[0][0].startswith("shade-") and items[0][1] == "geomill-rasters"
    listed = cli(env, "catalog", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["backend"] == "pgstac+static"
    assert [i["id"] for i in doc["items"]] == [items[0][0]]
    shown = cli(env, "catalog", "show", items[0][0])
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == items[0][0]
    missing = cli(env, "catalog", "show", "nope")
    assert missing.returncode == 1 and "no item or collection 'nope'" in missing.stderr


def test_pgstac_installed_concurrently_into_databases_of_one_cluster() -> None:
    """Class: several databases on one PostgreSQL cluster migrated at once (tenants, test runs side by side). pgSTAC's
    migration also writes cluster-wide rows (its roles and their grants), which an advisory lock (per database) does
    not serialize: PostgreSQL answers "tuple concurrently updated". Each install must still succeed."""
    from contextlib import ExitStack

    from services import fresh_database

    with ExitStack() as stack:
        urls = [stack.enter_context(fresh_database("geomill_pgstac_race")) for _ in range(4)]
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            versions = pool.map(_ensure, urls)
    assert versions == [PGSTAC_VERSION] * 4
