"""process_raster with inputs and outputs in object storage (moto's S3 server, Azurite): s3→s3, az→az, local→s3.

The job runs as submitted over HTTP would be (restricted path policy, through the service), then an in-process
worker: the COG lands in the bucket, validates when read back through GDAL's /vsis3/ or /vsiaz/ from the object
store, the STAC item's asset href is the object's URI, and no credential appears in the job result or health.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geomill.config import Settings
from geomill.domain import InvalidInput
from geomill.roles import resolve_role
from geomill.runtime import Runtime
from geomill.service.health import health_document
from geomill.service.submit import submit
from geomill.storage import ObjectStorage
from geomill.tasks.raster.cogcheck import validate_cog
from jobrun import run_until_finished
from services import AZURITE_KEY, S3_ENV, ensure_azurite, ensure_s3, fresh_bucket, fresh_container

QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]


def geotiff_bytes(tmp_path: Path, name: str = "scene.tif") -> Path:
    """A small striped (not yet cloud-optimized) georeferenced GeoTIFF, made with rasterio."""
    path = tmp_path / name
    data = (np.arange(600 * 700, dtype=np.uint16).reshape(1, 600, 700) % 4000).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=700, height=600, count=1, dtype="uint16",
                       crs="EPSG:32618", transform=Affine(10, 0, 500000, 0, -10, 4000000), nodata=0) as ds:
        ds.write(data)
    return path


def open_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, env: dict[str, str],
                 source_backend: str) -> tuple[Runtime, str]:
    """A runtime whose silver (and, unless the source is local, bronze) zone is in `backend`; the source URI."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = fresh_bucket() if backend == "s3" else fresh_container()
    zones = {"silver_url": f"{backend}://{bucket}/silver/"}
    if source_backend != "local":
        zones["bronze_url"] = f"{backend}://{bucket}/bronze/"
    else:  # and a public https base for silver's objects
        zones["silver_public_url"] = f"https://cdn.example.org/{bucket}"
    settings = Settings(data_dir=tmp_path / "data", database_url=None, app_name="storage-test", workers=1,
                        queues=QUEUES, plugins=[], poll_interval_seconds=0.05, **zones)
    rt = Runtime.open(settings)
    local = geotiff_bytes(tmp_path)
    rt.storage.put_file(local, "bronze://scenes/scene.tif")  # a folder of the data dir, or the bucket
    assert rt.storage.is_remote("bronze://scenes/scene.tif") == (source_backend != "local")
    return rt, "bronze://scenes/scene.tif"


CASES = [("s3", "s3"), ("az", "az"), ("s3", "local")]


@pytest.mark.parametrize(("backend", "source_backend"), CASES, ids=["s3-to-s3", "az-to-az", "local-to-s3"])
def test_process_raster_writes_a_valid_cog_and_item_into_object_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, source_backend: str) -> None:
    env = ensure_s3() if backend == "s3" else ensure_azurite()
    rt, source = open_runtime(tmp_path, monkeypatch, backend, env, source_backend)
    try:
        job = submit(rt, "process_raster", {"source": source}, restricted=True).job
        done = run_until_finished(rt, job.job_id, timeout=120)
        assert done.status.value == "completed", done.error
        result = done.result
        assert result is not None
        [out] = result["outputs"]
        assert out["valid"] is True and out["reused"] is False
        cog_uri = out["cog_uri"]
        where = rt.storage.object_uri(cog_uri)
        assert where.startswith(f"{backend}://") and out["cog_path"] == where

        gdal_name = rt.storage.gdal_path(cog_uri)
        assert gdal_name.startswith(f"/vsi{backend}/")
        valid, errors, _ = validate_cog(gdal_name)  # read back from the object store by GDAL, in place
        assert valid and not errors
        with rasterio.open(gdal_name) as ds:
            assert (ds.width, ds.height, ds.crs.to_epsg()) == (700, 600, 32618)
            assert ds.overviews(1)

        item = json.loads(Path(out["stac_item_path"]).read_text())
        public = rt.settings.silver_public_url
        assert item["assets"]["data"]["href"] == (where if public is None else
                                                  f"{public}/{cog_uri.removeprefix('silver://')}")
        assert not any(rt.storage.scratch_dir().rglob("*.tif*"))  # staging cleaned up

        secrets = [v for k, v in env.items() if k != "AWS_ENDPOINT_URL" and k != "AWS_REGION"]
        secrets += [AZURITE_KEY] if backend == "az" else []
        health, _ = health_document(rt, resolve_role("standalone"))
        for text in (json.dumps(result), repr(done), json.dumps(health),
                     repr(rt.storage)):
            for secret in secrets:
                assert secret not in text

        again = run_until_finished(rt, submit(rt, "process_raster", {"source": source}, restricted=True,
                                              force=True).job.job_id, timeout=120)
        assert again.result is not None and again.result["outputs"][0]["reused"] is True
    finally:
        rt.close()


def test_missing_remote_source_is_refused_at_submit_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = ensure_s3()
    rt, _ = open_runtime(tmp_path, monkeypatch, "s3", env, "s3")
    try:
        with pytest.raises(InvalidInput, match=r"bronze://scenes/absent\.tif.*no such object"):
            submit(rt, "process_raster", {"source": "bronze://scenes/absent.tif"}, restricted=True)
    finally:
        rt.close()


def test_cloud_source_outside_the_configured_buckets_is_refused_over_http_s3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = ensure_s3()
    rt, _ = open_runtime(tmp_path, monkeypatch, "s3", env, "s3")
    other = fresh_bucket()
    storage = ObjectStorage(tmp_path / "x", env=S3_ENV)
    storage.write_bytes(f"s3://{other}/scene.tif", b"not checked: refused before")
    try:
        with pytest.raises(InvalidInput, match="outside the allowed buckets"):
            submit(rt, "process_raster", {"source": f"s3://{other}/scene.tif"}, restricted=True)
        for url in ("https://example.org/scene.tif", "/vsicurl/https://example.org/scene.tif"):
            with pytest.raises(InvalidInput, match="HTTPS|virtual file"):
                submit(rt, "process_raster", {"source": url}, restricted=True)
        rt.settings = rt.settings.model_copy(update={"source_roots": [f"s3://{other}/"]})
        assert submit(rt, "process_raster", {"source": f"s3://{other}/scene.tif"}, restricted=True).created
    finally:
        rt.close()
