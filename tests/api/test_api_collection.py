"""process_raster_collection over HTTP: every file it names stays inside the storage zones or the allowed roots."""

from __future__ import annotations

from api_helpers import RGB, Api, assert_problem


def test_sources_and_prefix_outside_the_allowed_places_are_refused(api: Api) -> None:
    before = api.client.get("/api/jobs", headers=api.h("read")).json()["items"]
    for params, field in [
        ({"sources": ["bronze://in/a.tif", str(RGB)]}, "sources"),  # exists, but outside the allowed roots
        ({"sources": ["bronze://../escape.tif"]}, "sources"),
        ({"source_prefix": str(RGB.parent)}, "source_prefix"),
    ]:
        problem = assert_problem(api.submit("process_raster_collection", params), 422)
        assert [e["field"] for e in problem["errors"]] == [field], problem
    assert api.client.get("/api/jobs", headers=api.h("read")).json()["items"] == before  # nothing stored


def test_collection_job_type_is_described(api: Api) -> None:
    types = {t["name"]: t for t in api.client.get("/api/job-types", headers=api.h("read")).json()}
    job = types["process_raster_collection"]
    assert [s["name"] for s in job["stages"]] == ["list_sources", "validate", "create_cog", "mosaic", "collection"]
    props = job["parameters"]["properties"]
    assert props["sources"]["x-geomill-file"] is True and props["source_prefix"]["x-geomill-file"] is True
