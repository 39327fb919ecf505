"""Property (issue 19): for any GeoTIFF shape GDAL writes, ``process_raster`` gives a valid COG that reads back
pixel-identical (no reprojection), or an InvalidInput naming the file; never a retried failure or a crash.

Profiles: ``ci`` (default, 30 derandomized examples, a few seconds) and ``long`` (HYPOTHESIS_PROFILE=long: 500 examples,
for bench or manual runs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from geomill.catalog.base import open_catalog
from geomill.catalog.validation import validate_item_file
from geomill.domain import InvalidInput
from geomill.engine.context import TaskContext
from geomill.engine.registry import Registry
from geomill.jobs import raster as raster_jobs
from geomill.storage.local import LocalStorage
from geomill.tasks import raster as raster_tasks
from geomill.tasks import stac as stac_tasks
from geomill.tasks.raster.cogcheck import validate_cog
from jobrun import run_job
from raster_inputs import wide_int_tif

# Profiles: tests/hypothesis_profiles.py. 30 examples at least: 25 did not reach a failing case of the old code.
EXAMPLES = max(30, settings.default.max_examples)

SIDES = [1, 2, 3, 5, 7, 13, 31, 97, 257, 521, 1031]
DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "float32", "float64",
          "complex64"]
WIDE_INTS = {"int64", "uint64"}  # their extreme nodata values are written as GDAL does (raster_inputs.wide_int_tif)
CRSES = {  # name: (CRS, transform)
    "geographic": ("EPSG:4326", Affine(0.01, 0, 10, 0, -0.01, 50)),
    "projected": ("EPSG:32633", Affine(30, 0, 500000, 0, -30, 5500000)),
    "polar": ("EPSG:3413", Affine(1000, 0, -100000, 0, -1000, 100000)),
    "none": (None, Affine(30, 0, 500000, 0, -30, 5500000)),
}
PIXEL_BUDGET = 200_000  # width x height x bands: keeps an example fast


def _registry() -> Registry:
    registry = Registry()
    raster_tasks.register(registry)
    stac_tasks.register(registry)
    raster_jobs.register(registry)
    return registry


REGISTRY = _registry()


def run_process_raster(source: Path, ctx: TaskContext) -> dict:
    """Plan and run each stage of process_raster through the registered handlers, then finalize."""
    return run_job(REGISTRY, "process_raster", raster_jobs.ProcessRasterParams(source=str(source)), ctx)[0]


@st.composite
def geotiffs(draw: st.DrawFn) -> dict:
    shape = draw(st.sampled_from(["any", "row", "column"]))
    width = 1 if shape == "column" else draw(st.sampled_from(SIDES))
    height = 1 if shape == "row" else draw(st.sampled_from(SIDES))
    count = draw(st.integers(1, 5))
    assume(width * height * count <= PIXEL_BUDGET)
    dtype = draw(st.sampled_from(DTYPES))
    kind = np.dtype(dtype).kind
    info = np.finfo(dtype) if kind in "fc" else np.iinfo(dtype)
    nodata_choices: list = [None, 0, "min", "max"] + (["nan"] if kind == "f" else [])
    nodata = draw(st.sampled_from(nodata_choices))
    layout = draw(st.sampled_from(["tiled16", "tiled256", "striped1", "striped7", "striped_all"]))
    compression = draw(st.sampled_from(["none", "deflate", "lzw", "packbits", "zstd"]))
    crs = draw(st.sampled_from(sorted(CRSES)))
    seed = draw(st.integers(0, 2**32 - 1))
    return {"width": width, "height": height, "count": count, "dtype": dtype, "nodata": nodata,
            "layout": layout, "compression": compression, "crs": crs, "seed": seed,
            "min": _extreme(info.min, dtype), "max": _extreme(info.max, dtype)}


def _extreme(value: float, dtype: str) -> float | int:
    """The type's extreme as nodata: exact for 64-bit integers (a double would round it out of range)."""
    kind = np.dtype(dtype).kind
    return 0.0 if kind == "c" else int(value) if dtype in WIDE_INTS else float(value)


def write(case: dict, folder: Path) -> Path:
    rng = np.random.default_rng(case["seed"])
    dtype, kind = case["dtype"], np.dtype(case["dtype"]).kind
    shape = (case["count"], case["height"], case["width"])
    if kind == "f":
        data = (rng.standard_normal(shape) * 1000).astype(dtype)
    elif kind == "c":
        data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    nodata = {"min": case["min"], "max": case["max"], "nan": float("nan")}.get(case["nodata"], case["nodata"])
    if nodata is not None and kind != "c" and data.size > 1:  # some nodata pixels, never all
        data.reshape(-1)[:: max(2, data.size // 7)] = nodata
    crs, transform = CRSES[case["crs"]]
    profile: dict = {"driver": "GTiff", "width": case["width"], "height": case["height"], "count": case["count"],
                     "dtype": dtype, "transform": transform, "nodata": nodata, "compress": case["compression"]}
    if crs:
        profile["crs"] = crs
    layout = case["layout"]
    if layout.startswith("tiled"):
        size = int(layout.removeprefix("tiled"))
        profile.update(tiled=True, blockxsize=size, blockysize=size)
    else:
        rows = {"striped1": 1, "striped7": 7}.get(layout, case["height"])
        profile.update(tiled=False, blockysize=min(rows, case["height"]))
    path = folder / f"in-{case['dtype']}-{case['width']}x{case['height']}.tif"
    if dtype in WIDE_INTS and nodata is not None and crs:
        creation = {k: v for k, v in profile.items() if k in ("compress", "tiled", "blockxsize", "blockysize")}
        return wide_int_tif(path, data, int(nodata), crs=crs, transform=transform, **creation)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def check_case(case: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = write(case, folder)
        storage = LocalStorage(folder / "store")
        storage.ensure_zones()
        ctx = TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage,
                          catalog=open_catalog(storage))
        try:
            outcome = run_process_raster(source, ctx)
        except InvalidInput as exc:
            assert source.name in str(exc), str(exc)
            assert case["crs"] == "none" or case["dtype"] == "complex64", f"refused a good input: {exc}"
            return
        assert case["crs"] != "none" and case["dtype"] != "complex64", "accepted an input it must refuse"
        out = outcome["outputs"][0]
        valid, errors, _ = validate_cog(Path(out["cog_path"]))  # rio-cogeo, right for every shape
        assert valid and not errors and out["valid"], errors
        validate_item_file(out["stac_item_path"])
        with rasterio.open(source) as src, rasterio.open(out["cog_path"]) as cog:
            assert (cog.width, cog.height, cog.count, cog.dtypes) == (src.width, src.height, src.count, src.dtypes)
            assert cog.transform == src.transform and cog.crs == src.crs
            assert (cog.nodata == src.nodata) or (np.isnan(cog.nodata) and np.isnan(src.nodata))
            np.testing.assert_array_equal(cog.read_masks(), src.read_masks())  # nodata still marks the same pixels
            np.testing.assert_array_equal(cog.read(), src.read())  # NaN == NaN here


@settings(max_examples=EXAMPLES)
@given(geotiffs())
def test_process_raster_property_valid_cog_pixel_identical_or_invalid_input(case: dict) -> None:
    check_case(case)


@pytest.mark.parametrize("dtype", sorted(WIDE_INTS))
@pytest.mark.parametrize("nodata", [None, 0, "min", "max"])
def test_wide_integer_rasters_keep_their_extreme_nodata(dtype: str, nodata: str | int | None) -> None:
    """Class: 64-bit integer rasters (values across the whole range), nodata at the type's extremes written exactly
    as GDAL does. The COG reads back pixel-identical with the same nodata mask (GDAL copies the value exactly)."""
    info = np.iinfo(dtype)
    check_case({"width": 31, "height": 13, "count": 2, "dtype": dtype, "nodata": nodata, "layout": "tiled16",
                "compression": "deflate", "crs": "projected", "seed": 7, "min": int(info.min), "max": int(info.max)})
