"""sync_container's plans and kinds, without storage: diff key ranges tile the key space, the sync stage is one
task per change-list line, scopes separate collections and options, kinds come from extensions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from geomill.domain.models import StageResults
from geomill.jobs.container import SyncContainerParams, plan_diff, plan_sync_files, scope_of
from geomill.tasks.container.kinds import kind_of, kind_of_bytes

PARAMS = SyncContainerParams(source="s3://h18c-bucket/scenes/")


def listed(*last_keys: str) -> list[StageResults]:
    parts = [{"uri": f"silver://m/part-{i:05d}.jsonl", "count": 1, "bytes": 1, "first_key": k, "last_key": k}
             for i, k in enumerate(last_keys)]
    return [StageResults("list", {"list": {"parts": parts}}, {})]


def test_diff_ranges_tile_the_key_space_open_at_both_ends() -> None:
    specs = plan_diff(PARAMS, listed("c", "m", "x"))
    ranges = [(s.params["after"], s.params["upto"]) for s in specs]
    assert ranges == [(None, "c"), ("c", "m"), ("m", None)]
    assert {s.params["scope"] for s in specs} == {scope_of(PARAMS)}


def test_an_empty_listing_still_diffs_the_whole_range_for_deletions() -> None:
    [spec] = plan_diff(PARAMS, listed())
    assert (spec.params["part_uri"], spec.params["after"], spec.params["upto"]) == (None, None, None)


def test_sync_stage_is_one_task_per_change_line_and_nothing_when_unchanged() -> None:
    diffs = {"diff-00000": {"part": 0, "changes": [{"uri": "silver://c/0-0.jsonl", "count": 2}]},
             "diff-00001": {"part": 1, "changes": []},
             "diff-00002": {"part": 2, "changes": [{"uri": "silver://c/2-0.jsonl", "count": 500},
                                                   {"uri": "silver://c/2-1.jsonl", "count": 1}]}}
    previous = [*listed("a"), StageResults("diff", diffs, {})]
    specs = list(plan_sync_files(PARAMS, previous))
    assert len(specs) == 503 and len({s.key for s in specs}) == 503
    assert (specs[-1].params["changes_uri"], specs[-1].params["index"]) == ("silver://c/2-1.jsonl", 0)
    unchanged = {k: {**d, "changes": []} for k, d in diffs.items()}
    assert list(plan_sync_files(PARAMS, [*listed("a"), StageResults("diff", unchanged, {})])) == []


def test_scope_separates_collections_filters_and_options_not_remove_deleted() -> None:
    base = scope_of(PARAMS)
    assert scope_of(PARAMS.model_copy(update={"remove_deleted": True, "part_size": 5})) == base
    for change in ({"collection_id": "other"}, {"pattern": "*.tif"}, {"target_crs": "EPSG:4326"}):
        assert scope_of(PARAMS.model_copy(update=change)) != base


def test_parameters_are_checked_at_submit() -> None:
    assert SyncContainerParams(source="x/", extensions=["TIF", ".jp2"]).extensions == [".jp2", ".tif"]
    for bad in ({"collection_id": "../up"}, {"extensions": ["."]}, {"part_size": 0}):
        with pytest.raises(ValidationError):
            SyncContainerParams(source="x/", **bad)


@pytest.mark.parametrize(("key", "kind"), [
    ("a/scene.TIF", "raster"), ("b.jp2", "raster"), ("roads.gpkg", "vector"), ("x.geojson", "vector"),
    ("data.zip", "archive"), ("scene.tif.aux.xml", "sidecar"), ("roads.dbf", "sidecar"), ("notes.txt", "other"),
    ("table.csv", "other"), (".hidden/scene.tif", "other"), ("noext", "other"),
])
def test_kind_by_extension(key: str, kind: str) -> None:
    assert kind_of(key) == kind


@pytest.mark.parametrize(("head", "kind"), [
    (b"II*\x00\x08\x00", "raster"), (b"MM\x00*", "raster"), (b"II+\x00", "raster"), (b"\x89HDF\r\n\x1a\n", "raster"),
    (b"CDF\x01", "raster"), (b"SQLite format 3\x00", "vector"), (b"PK\x03\x04", "archive"), (b"hello", None),
    (b"", None),
])
def test_kind_by_magic_bytes(head: bytes, kind: str | None) -> None:
    assert kind_of_bytes(head) == kind
