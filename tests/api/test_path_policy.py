"""Path policy over HTTP (issue 20, hole 1): every spelling of a file outside the allowed roots is refused with 422
before a job exists; a null byte is a 422, not a 500."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api_helpers import Api, assert_problem


def _refused(api: Api, params: dict[str, object], field: str = "source") -> None:
    r = api.submit("process_raster" if "source" in params else "process_raster_collection", params)
    body = assert_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == [field], body
    assert api.job_count() == 0


@pytest.mark.parametrize("source", ["FILE:///etc/passwd", "File:///etc/passwd", "fIlE://localhost/etc/passwd",
                                    "file://evil.example/{data}/bronze/x.tif"])
def test_scheme_case_does_not_bypass_the_roots(api: Api, source: str) -> None:
    _refused(api, {"source": source.replace("{data}", str(api.data_dir))})


def test_file_uri_outside_the_configured_root_is_refused(make_api, tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    api = make_api(source_roots=[root])
    for source in (f"file://{outside}/x.tif", f"{outside}/x.tif", f"file://{root}/../outside/x.tif",
                   f"FILE://{root}/../outside/x.tif"):
        _refused(api, {"source": source})


def test_symlink_inside_the_root_pointing_outside_is_refused(make_api, tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "x.tif").write_bytes(b"secret")
    os.symlink(outside / "x.tif", root / "link.tif")
    os.symlink(outside, root / "dir")
    api = make_api(source_roots=[root])
    for source in (f"{root}/link.tif", f"file://{root}/link.tif", f"File://{root}/dir/x.tif"):
        _refused(api, {"source": source})
    _refused(api, {"sources": [f"{root}/ok.tif", f"{root}/link.tif"]}, field="sources")
    _refused(api, {"source_prefix": f"FILE://{root}/dir/"}, field="source_prefix")


@pytest.mark.parametrize("source", ["bronze://a\x00.tif", "/etc/pass\x00wd", "file:///x\x00.tif", "\x00"])
def test_null_byte_is_invalid_input_not_a_server_error(api: Api, source: str) -> None:
    _refused(api, {"source": source})


def test_inside_the_root_is_accepted_and_stored_normalised(make_api, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "x.tif").touch()
    api = make_api(source_roots=[root])
    r = api.submit("process_raster", {"source": f"FILE://{root}/sub/../x.tif"})
    assert r.status_code == 202, r.text
    stored = api.rt.store.get_job(r.json()["job_id"]).params["source"]
    assert stored == f"file://{root.resolve()}/x.tif"
    same = api.submit("process_raster", {"source": f"file://{root}/x.tif"})
    assert same.status_code == 200 and same.json()["job_id"] == r.json()["job_id"]  # one spelling, one job
    keyed = api.submit("process_raster", {"source": "FILE:///etc/passwd"}, **{"Idempotency-Key": "k1"})
    assert_problem(keyed, 422)
