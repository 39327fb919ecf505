"""sync_container's plans and kinds, without storage: diff key ranges tile the key space, the sync stage is one
task per change-list line, scopes separate collections and options, kinds come from extensions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from geomill.domain.models import StageResults
from geomill.jobs.container import SyncContainerParams, plan_diff, plan_mosaic, plan_sync_files, scope_of
from geomill.tasks.container.kinds import is_loadable_vector, kind_of, kind_of_bytes

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


def test_vector_loading_is_a_scope_of_its_own_and_reaches_the_diff_and_file_tasks() -> None:
    """A sync without load_vectors keeps the scope it always had; with it, the schema is part of the scope."""
    loading = PARAMS.model_copy(update={"load_vectors": True})
    assert scope_of(PARAMS.model_copy(update={"vector_schema": "other"})) == scope_of(PARAMS)
    assert scope_of(loading) != scope_of(PARAMS)
    assert scope_of(loading.model_copy(update={"vector_schema": "other"})) != scope_of(loading)
    [diff] = plan_diff(loading, listed("a"))
    assert diff.params["vectors"] is True and plan_diff(PARAMS, listed("a"))[0].params["vectors"] is False
    previous = [*listed("a"), StageResults("diff", {"diff-00000": {
        "part": 0, "changes": [{"uri": "silver://c/0-0.jsonl", "count": 1}]}}, {})]
    assert [s.params["vector_schema"] for s in plan_sync_files(loading, previous)] == ["geo"]
    assert [s.params["vector_schema"] for s in plan_sync_files(PARAMS, previous)] == [None]


def test_mosaic_is_planned_only_when_rasters_changed_or_were_removed() -> None:
    def diffs(rasters: int, removed: int) -> list[StageResults]:
        return [StageResults("diff", {"diff-00000": {"part": 0, "rasters": rasters, "removed": removed}}, {})]

    assert plan_mosaic(PARAMS, diffs(0, 0)) == []  # nothing changed, or only vector files
    [spec] = plan_mosaic(PARAMS, diffs(2, 0))
    assert spec.params == {"scope": scope_of(PARAMS), "collection_id": PARAMS.collection_id}
    assert len(plan_mosaic(PARAMS, diffs(0, 1))) == 1
    assert plan_mosaic(PARAMS.model_copy(update={"mosaic": False}), diffs(2, 1)) == []


def test_vector_files_and_zip_archives_are_loadable_other_archives_not() -> None:
    assert [is_loadable_vector(k, kind_of(k)) for k in ("a.geojson", "b.gpkg", "c.fgb", "d.zip", "e.tar.gz",
                                                        "f.tif", "g.dbf")] == [True, True, True, True, False,
                                                                               False, False]


def test_parameters_are_checked_at_submit() -> None:
    assert SyncContainerParams(source="x/", extensions=["TIF", ".jp2"]).extensions == [".jp2", ".tif"]
    for bad in ({"collection_id": "../up"}, {"extensions": ["."]}, {"part_size": 0}, {"vector_schema": "Bad-Name"},
                {"vector_schema": "select"}):
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
