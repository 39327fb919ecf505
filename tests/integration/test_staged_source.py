"""create_cog stages a remote single-file source in the scratch space (one streamed GET) instead of reading it in
place range by range: the COG must be the same either way, for a class of sources (band counts, data types, nodata,
internal masks); a source with a side file (an external .msk mask in the bucket) stays read in place, where GDAL
finds the side file; and the scratch space is empty afterwards.

Runs on moto's S3 server (tests/services.py); the worker loop runs in-process so the staging can be observed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geomill.config import Settings
from geomill.runtime import Runtime
from geomill.service.submit import submit
from geomill.storage import ObjectStorage
from jobrun import run_until_finished
from services import ensure_s3, fresh_bucket

QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]

# (name, bands, dtype, nodata, internal mask): the class of single-file sources
SOURCES = [
    ("u8-rgb", 3, "uint8", None, False),
    ("u16-nodata", 1, "uint16", 0, False),
    ("f32-nan", 1, "float32", float("nan"), False),
    ("i16-internal-mask", 2, "int16", None, True),
]


def make_source(folder: Path, name: str, bands: int, dtype: str, nodata: float | None, mask: bool,
                external_mask: bool = False) -> list[Path]:
    """A striped GeoTIFF (and its .msk when `external_mask`): the files to upload side by side."""
    rng = np.random.default_rng(7)
    path = folder / f"{name}.tif"
    h, w = 300, 400
    data = rng.integers(1, 120, size=(bands, h, w)).astype(dtype)
    if nodata is not None:
        data[:, :40, :] = nodata
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=not external_mask), rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=dtype, crs="EPSG:32633",
            transform=Affine(30, 0, 400000, 0, -30, 5000000), nodata=nodata) as ds:
        ds.write(data)
        if mask or external_mask:
            valid = np.full((h, w), 255, dtype="uint8")
            valid[:, :50] = 0
            ds.write_mask(valid)
    files = [path]
    if external_mask:
        files.append(path.with_name(path.name + ".msk"))
        assert files[-1].exists()
    return files


@contextmanager
def s3_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage_mb: float) -> Iterator[Runtime]:
    for key, value in ensure_s3().items():
        monkeypatch.setenv(key, value)
    bucket = fresh_bucket()
    settings = Settings(data_dir=tmp_path / f"data-{stage_mb:g}", database_url=None, app_name="staged-test",
                        workers=1, queues=QUEUES, plugins=[], poll_interval_seconds=0.05,
                        bronze_url=f"s3://{bucket}/bronze/", silver_url=f"s3://{bucket}/silver/",
                        stage_source_max_mb=stage_mb)
    rt = Runtime.open(settings)
    try:
        yield rt
    finally:
        rt.close()


def convert(rt: Runtime, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Upload `files`, run process_raster on the first; the COG's pixels and dataset mask."""
    for f in files:
        rt.storage.put_file(f, f"bronze://in/{f.name}")
    job = submit(rt, "process_raster", {"source": f"bronze://in/{files[0].name}"}, restricted=True).job
    done = run_until_finished(rt, job.job_id, timeout=120)
    assert done.status.value == "completed", done.error
    assert done.result is not None
    [out] = done.result["outputs"]
    assert out["valid"] is True
    with rasterio.open(rt.storage.gdal_path(out["cog_uri"])) as cog:
        pixels, mask = cog.read(), cog.dataset_mask()
    assert not [p for p in rt.storage.scratch_dir().rglob("*") if p.is_file()]  # scratch emptied
    return pixels, mask


def counting_copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    staged: list[str] = []
    original = ObjectStorage.scratch_copy

    @contextmanager
    def spy(self: ObjectStorage, uri: str) -> Iterator[Path]:
        staged.append(uri)
        with original(self, uri) as path:
            yield path

    monkeypatch.setattr(ObjectStorage, "scratch_copy", spy)
    return staged


@pytest.mark.parametrize(("name", "bands", "dtype", "nodata", "mask"), SOURCES, ids=[s[0] for s in SOURCES])
def test_class_single_file_sources_staged_give_the_same_cog_as_read_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, bands: int, dtype: str,
        nodata: float | None, mask: bool) -> None:
    files = make_source(tmp_path, name, bands, dtype, nodata, mask)
    staged = counting_copies(monkeypatch)
    with s3_runtime(tmp_path, monkeypatch, stage_mb=0) as rt:
        in_place = convert(rt, files)
    assert staged == []
    with s3_runtime(tmp_path, monkeypatch, stage_mb=2048) as rt:
        copied = convert(rt, files)
    assert staged == [f"bronze://in/{files[0].name}"]
    np.testing.assert_array_equal(copied[0], in_place[0])
    np.testing.assert_array_equal(copied[1], in_place[1])
    if nodata is not None or mask:
        assert (copied[1] == 0).any()  # the invalid area stayed invalid


def test_source_with_an_external_mask_is_read_in_place_and_keeps_its_mask(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_source(tmp_path, "external-mask", 1, "uint8", None, False, external_mask=True)
    staged = counting_copies(monkeypatch)
    with s3_runtime(tmp_path, monkeypatch, stage_mb=2048) as rt:
        _, mask = convert(rt, files)
    assert staged == []  # two files: GDAL reads the .msk beside it in the bucket
    assert (mask[:, :50] == 0).all() and (mask[:, 50:] == 255).all()


def test_source_larger_than_the_limit_is_read_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_source(tmp_path, "big", 1, "uint16", 0, False)
    staged = counting_copies(monkeypatch)
    with s3_runtime(tmp_path, monkeypatch, stage_mb=files[0].stat().st_size / 2**20 / 2) as rt:
        convert(rt, files)
    assert staged == []
