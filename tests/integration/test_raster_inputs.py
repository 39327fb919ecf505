"""Issue 19, rasters: every input class GDAL reads is converted right or refused clearly (InvalidInput naming the
file and the reason). Each input is generated here with GDAL (through rasterio) in tmp_path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate

from geomill.catalog.validation import validate_item_file
from geomill.domain import InvalidInput
from geomill.engine.context import Limits, TaskContext
from geomill.storage.local import LocalStorage
from geomill.tasks.raster.cog import CreateCogParams, create_cog
from geomill.tasks.raster.models import RESAMPLINGS, TileSchemeParams
from geomill.tasks.raster.tiles import tile_scheme
from geomill.tasks.raster.validate import ValidateRasterParams, validate_raster
from geomill.tasks.stac.item import CreateItemParams, create_item
from jobrun import run_job
from raster_inputs import (
    GEOS,
    gcp_tif,
    hdf5_container,
    netcdf_classic,
    netcdf_four_dimensions,
    wide_int_tif,
    write_tif,
)


def assert_valid_cog(path: str | Path) -> None:
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors, errors


def item_of(cog, ctx: TaskContext) -> dict:
    import json

    result = create_item(CreateItemParams(cog_uri=cog.cog_uri, source=cog.source), ctx)
    validate_item_file(result.item_path)
    return json.loads(Path(result.item_path).read_text())


# ---------------------------------------------------------------- georeferenced by GCPs only


@pytest.mark.parametrize("identity", [False, True], ids=["gcps_only", "identity_transform_with_gcps"])
@pytest.mark.parametrize("method", [None, "tps"])
def test_gcp_georeferenced_raster_is_warped_where_its_gcps_say(
    identity: bool, method: str | None, tmp_path: Path, ctx: TaskContext
) -> None:
    source, gcps = gcp_tif(tmp_path / "scan.tif", identity=identity)
    summary = validate_raster(ValidateRasterParams(source=str(source)), ctx)
    assert summary.gcp_count == 6 and summary.epsg == 4326
    transform, width, height = calculate_default_transform("EPSG:4326", "EPSG:4326", 64, 48, gcps=gcps)
    assert summary.bounds_wgs84 == pytest.approx(array_bounds(height, width, transform), abs=1e-9)
    extra = {"SRC_METHOD": "GCP_TPS"} if method == "tps" else {}
    transform, width, height = calculate_default_transform("EPSG:4326", "EPSG:4326", 64, 48, gcps=gcps, **extra)
    expected = array_bounds(height, width, transform)  # GDAL's own GCP warp (as gdalwarp would do)
    cog = create_cog(CreateCogParams(source=str(source), gcp_method=method, resampling="nearest"), ctx)
    assert_valid_cog(cog.path)
    with rasterio.open(cog.path) as ds, rasterio.open(source) as src:
        assert ds.crs.to_epsg() == 4326 and not ds.gcps[0]
        pixel = abs(ds.transform.a)
        assert tuple(ds.bounds) == pytest.approx(expected, abs=pixel)
        assert (ds.width, ds.height) == (width, height)
        reference = np.zeros((3, height, width), "uint8")  # the same warp by rasterio.warp, pixel for pixel
        reproject(src.read(), reference, gcps=gcps, src_crs="EPSG:4326", dst_transform=transform,
                  dst_crs="EPSG:4326", src_nodata=0, dst_nodata=0, resampling=Resampling.nearest, **extra)
        assert np.mean(ds.read() == reference) > 0.99
        assert (ds.read(1) > 0).mean() > 0.3  # the raster is there (a sheared quadrilateral), not an empty frame
    assert item_of(cog, ctx)["bbox"] == pytest.approx(expected, abs=pixel)


def test_gcp_method_tps_differs_from_the_polynomial_and_is_refused_when_unknown(
    tmp_path: Path, ctx: TaskContext
) -> None:
    source, _ = gcp_tif(tmp_path / "scan.tif")
    poly = create_cog(CreateCogParams(source=str(source)), ctx)
    tps = create_cog(CreateCogParams(source=str(source), gcp_method="tps"), ctx)
    assert poly.cog_uri != tps.cog_uri
    with pytest.raises(InvalidInput, match="gcp_method"):
        create_cog(CreateCogParams(source=str(source), gcp_method="spline"), ctx)


# ---------------------------------------------------------------- subdatasets (netCDF)


def test_netcdf_subdatasets_container_is_refused_listing_them(tmp_path: Path, ctx: TaskContext) -> None:
    nc = netcdf_classic(tmp_path / "climate.nc")
    with rasterio.open(nc) as ds:
        assert ds.count == 0 and len(ds.subdatasets) == 2
    for call in (lambda: validate_raster(ValidateRasterParams(source=str(nc)), ctx),
                 lambda: create_cog(CreateCogParams(source=str(nc)), ctx)):
        with pytest.raises(InvalidInput) as err:
            call()
        message = str(err.value)
        assert "climate.nc" in message and "precip" in message and "temp" in message
        assert "subdataset" in message and "0 bands" in message and "no coordinate" not in message


def test_netcdf_subdatasets_one_is_selected_by_the_subdataset_parameter(tmp_path: Path, ctx: TaskContext) -> None:
    nc = netcdf_classic(tmp_path / "climate.nc")
    summary = validate_raster(ValidateRasterParams(source=str(nc), subdataset="temp"), ctx)
    assert summary.count == 1 and summary.epsg == 4326 and summary.subdataset == "temp"
    cog = create_cog(CreateCogParams(source=str(nc), subdataset="temp"), ctx)
    other = create_cog(CreateCogParams(source=str(nc), subdataset="precip"), ctx)
    assert "climate-temp-" in cog.cog_uri and cog.cog_uri != other.cog_uri
    assert_valid_cog(cog.path)
    with rasterio.open(cog.path) as ds:
        assert np.all(ds.read(1) == 2.0) and ds.crs.to_epsg() == 4326
    with pytest.raises(InvalidInput, match=r"no subdataset 'wind'.*precip, temp"):
        create_cog(CreateCogParams(source=str(nc), subdataset="wind"), ctx)


def test_netcdf_multidimensional_variable_is_refused_with_the_reason(tmp_path: Path, ctx: TaskContext) -> None:
    nc = netcdf_four_dimensions(tmp_path / "cube.nc", tmp_path)
    with pytest.raises(InvalidInput, match=r"cube\.nc.*2 dimensions beyond y and x \(time, level\)"):
        validate_raster(ValidateRasterParams(source=str(nc)), ctx)


# ---------------------------------------------------------------- bounds that do not all transform to WGS84


def test_geostationary_full_disk_footprint_and_reprojection(tmp_path: Path, ctx: TaskContext) -> None:
    extent = 5_568_748.0  # the full disk: the corners are in space
    size = 100
    data = np.ones((1, size, size), "uint8")
    source = write_tif(tmp_path / "disk.tif", data, crs=GEOS, nodata=0,
                       transform=Affine(2 * extent / size, 0, -extent, 0, -2 * extent / size, extent))
    summary = validate_raster(ValidateRasterParams(source=str(source)), ctx)
    west, south, east, north = summary.bounds_wgs84
    assert all(math.isfinite(v) for v in summary.bounds_wgs84)
    assert -82 < west < -70 and 70 < east < 82 and -82 < south < -70 and 70 < north < 82
    cog = create_cog(CreateCogParams(source=str(source), target_crs="EPSG:4326"), ctx)
    assert_valid_cog(cog.path)
    with rasterio.open(cog.path) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.read(1).max() == 1
    native = create_cog(CreateCogParams(source=str(source)), ctx)
    bbox = item_of(native, ctx)["bbox"]
    assert all(math.isfinite(v) for v in bbox) and bbox == pytest.approx(summary.bounds_wgs84, abs=1.0)


@pytest.mark.parametrize("epsg, pole", [(3413, 90.0), (3031, -90.0)], ids=["arctic", "antarctic"])
def test_polar_stereographic_with_the_pole_inside(epsg: int, pole: float, tmp_path: Path,
                                                  ctx: TaskContext) -> None:
    source = write_tif(tmp_path / "polar.tif", np.ones((1, 60, 60), "uint8"), crs=f"EPSG:{epsg}", nodata=0,
                       transform=Affine(100_000, 0, -3_000_000, 0, -100_000, 3_000_000))
    summary = validate_raster(ValidateRasterParams(source=str(source)), ctx)
    assert summary.bounds_wgs84[0] == -180 and summary.bounds_wgs84[2] == 180
    assert pole in (summary.bounds_wgs84[1], summary.bounds_wgs84[3])
    cog = create_cog(CreateCogParams(source=str(source), target_crs="EPSG:4326"), ctx)
    assert_valid_cog(cog.path)
    item = item_of(create_cog(CreateCogParams(source=str(source)), ctx), ctx)
    assert item["bbox"][0] <= -179 and item["bbox"][2] >= 179


# ---------------------------------------------------------------- all nodata


@pytest.mark.parametrize("dtype, nodata", [("uint8", 0), ("float32", float("nan"))])
def test_all_nodata_raster_is_processed_with_a_warning(dtype: str, nodata: float, tmp_path: Path,
                                                        ctx: TaskContext) -> None:
    source = write_tif(tmp_path / "empty.tif", np.full((1, 40, 30), nodata, dtype), nodata=nodata)
    cog = create_cog(CreateCogParams(source=str(source)), ctx)
    assert_valid_cog(cog.path)
    assert any("no valid pixel" in w for w in cog.warnings)
    band = item_of(cog, ctx)["assets"]["data"]["raster:bands"][0]
    assert band["statistics"] == {"valid_percent": 0.0}


# ---------------------------------------------------------------- south-up grids


def test_south_up_grid_has_ordered_bboxes(tmp_path: Path, ctx: TaskContext) -> None:
    data = np.arange(1, 1 + 40 * 30, dtype="uint16").reshape(1, 40, 30)
    source = write_tif(tmp_path / "southup.tif", data, transform=Affine(30, 0, 500000, 0, 30, 4000000), nodata=0)
    summary = validate_raster(ValidateRasterParams(source=str(source)), ctx)
    assert summary.bounds == (500000, 4000000, 500900, 4001200)
    cog = create_cog(CreateCogParams(source=str(source)), ctx)
    assert_valid_cog(cog.path)
    item = item_of(cog, ctx)
    west, south, east, north = item["bbox"]
    assert west < east and south < north
    assert item["properties"]["proj:bbox"] == [500000, 4000000, 500900, 4001200]
    assert (west, south, east, north) == pytest.approx(summary.bounds_wgs84, abs=1e-6)


# ---------------------------------------------------------------- CRS without an EPSG code


def test_crs_without_epsg_code_is_described_in_wkt2(tmp_path: Path, ctx: TaskContext) -> None:
    crs = "+proj=laea +lat_0=47.3 +lon_0=11.7 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
    source = write_tif(tmp_path / "custom.tif", np.ones((1, 20, 20), "uint8"), crs=crs,
                       transform=Affine(100, 0, -1000, 0, -100, 1000))
    summary = validate_raster(ValidateRasterParams(source=str(source)), ctx)
    assert summary.epsg is None and summary.crs.startswith("PROJCRS[")
    item = item_of(create_cog(CreateCogParams(source=str(source)), ctx), ctx)
    props = item["properties"]
    assert props["proj:epsg"] is None
    assert props["proj:wkt2"].startswith("PROJCRS[") and "PROJCS[" not in props["proj:wkt2"]


# ---------------------------------------------------------------- nodata through reprojection


@pytest.mark.parametrize("resampling", sorted(RESAMPLINGS))
def test_nan_nodata_at_the_edge_survives_reprojection(resampling: str, tmp_path: Path, ctx: TaskContext) -> None:
    data = np.full((1, 64, 64), 5.0, "float32")
    data[0, :, :3] = np.nan  # the west edge
    data[0, :2, :] = np.nan  # the north edge
    source = write_tif(tmp_path / "edge.tif", data, nodata=float("nan"))
    cog = create_cog(CreateCogParams(source=str(source), target_crs="EPSG:4326", resampling=resampling), ctx)
    assert_valid_cog(cog.path)
    with rasterio.open(cog.path) as ds:
        assert math.isnan(ds.nodata)
        for level in [None, *ds.overviews(1)]:
            if level is None:
                out = ds.read(1)
            else:
                out = ds.read(1, out_shape=(ds.height // level, ds.width // level))
            valid = out[~np.isnan(out)]
            assert valid.size > 0
            np.testing.assert_allclose(valid, 5.0, rtol=1e-5, err_msg=f"nodata leaked into values ({level})")


# ---------------------------------------------------------------- non-ASCII file names


@pytest.mark.parametrize("name, readable", [("São Paulo.tif", "Sao_Paulo-"), ("Zürich_Straße.tif", "Zurich_Strasse-"),
                                            ("Москва.tif", "xn--o0a4bf5ats-")])
def test_non_ascii_file_name_keeps_a_readable_output_name(name: str, readable: str, tmp_path: Path,
                                                          ctx: TaskContext) -> None:
    source = write_tif(tmp_path / name, np.ones((1, 10, 10), "uint8"))
    cog = create_cog(CreateCogParams(source=str(source)), ctx)
    assert Path(cog.path).name.startswith(readable)
    assert item_of(cog, ctx)["id"].startswith(readable)


# ---------------------------------------------------------------- refused clearly


def test_complex_dtype_raster_is_refused_as_invalid_input(tmp_path: Path, ctx: TaskContext) -> None:
    source = write_tif(tmp_path / "sar.tif", np.ones((1, 10, 10), "complex64"))
    for call in (lambda: validate_raster(ValidateRasterParams(source=str(source)), ctx),
                 lambda: create_cog(CreateCogParams(source=str(source)), ctx)):
        with pytest.raises(InvalidInput, match=r"sar\.tif.*complex numbers \(complex64\)"):
            call()


def test_raster_without_crs_keeps_the_clear_error(tmp_path: Path, ctx: TaskContext) -> None:
    source = write_tif(tmp_path / "plain.tif", np.ones((1, 10, 10), "uint8"), crs=None)
    with pytest.raises(InvalidInput, match=r"plain\.tif.*no coordinate reference system"):
        validate_raster(ValidateRasterParams(source=str(source)), ctx)


def test_gcp_raster_and_subdataset_above_the_tiled_threshold_stay_on_the_single_path(
    tmp_path: Path, storage: LocalStorage
) -> None:
    ctx = TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage,
                      limits=Limits(large_raster_threshold_mb=0))
    source, _ = gcp_tif(tmp_path / "scan.tif")
    nc = netcdf_classic(tmp_path / "climate.nc")
    for params in (ValidateRasterParams(source=str(source)), ValidateRasterParams(source=str(nc), subdataset="temp")):
        summary = validate_raster(params, ctx)
        assert summary.processing is not None and summary.processing.path == "single"
        assert "converted as one COG" in summary.processing.reason
    plain = write_tif(tmp_path / "plain.tif", np.ones((1, 10, 10), "uint8"))
    summary = validate_raster(ValidateRasterParams(source=str(plain)), ctx)
    assert summary.processing is not None and summary.processing.path == "tiled"


def test_netcdf_subdatasets_process_raster_job_takes_the_subdataset_parameter(tmp_path: Path,
                                                                              ctx: TaskContext) -> None:
    from geomill.engine.registry import Registry
    from geomill.jobs import raster as raster_jobs
    from geomill.tasks import raster as raster_tasks
    from geomill.tasks import stac as stac_tasks

    registry = Registry()
    for module in (raster_tasks, stac_tasks, raster_jobs):
        module.register(registry)
    nc = netcdf_classic(tmp_path / "climate.nc")
    params = raster_jobs.ProcessRasterParams(source=str(nc), subdataset="precip")
    out = run_job(registry, "process_raster", params, ctx)[0]["outputs"][0]
    assert "climate-precip-" in out["cog_uri"] and out["warnings"] == []
    validate_item_file(out["stac_item_path"])
    with rasterio.open(out["cog_path"]) as ds:
        assert np.all(ds.read(1) == 1.0)


# ---------------------------------------------------------------- 64-bit integers


@pytest.mark.parametrize("dtype, nodata", [("int64", -2**63), ("int64", 2**63 - 1), ("uint64", 2**64 - 1),
                                           ("int64", 2**53 + 2)])
def test_wide_integer_extreme_nodata_is_refused_when_warped_or_tiled(dtype: str, nodata: int, tmp_path: Path,
                                                                    ctx: TaskContext) -> None:
    """Class: 64-bit integer rasters whose nodata lies beyond +/-2**53. A warp or a tile is written through
    rasterio, which turns such a value into a double that GDAL reads back wrong (-2**63 became -9): refused at once,
    naming the file, instead of a COG whose nodata marks the wrong pixels. Without reprojection or tiling GDAL copies
    the value exactly (test_raster_properties.py::test_wide_integer_rasters_keep_their_extreme_nodata)."""
    data = np.arange(64 * 64, dtype=dtype).reshape(1, 64, 64)
    data[0, :4] = nodata
    source = wide_int_tif(tmp_path / f"counts-{dtype}.tif", data, nodata)
    with pytest.raises(InvalidInput, match=rf"counts-{dtype}\.tif.*nodata value .*beyond \+/-2\*\*53: warping"):
        create_cog(CreateCogParams(source=str(source), target_crs="EPSG:4326"), ctx)
    assert not list(Path(ctx.storage.local_path("silver://")).rglob("*.tif")), "a refused COG left a file"
    with pytest.raises(InvalidInput, match=rf"counts-{dtype}\.tif.*cutting it into tiles"):
        tile_scheme(TileSchemeParams(source=str(source), tile_size=256), ctx)


def test_wide_integer_nodata_within_2_53_survives_reprojection(tmp_path: Path, ctx: TaskContext) -> None:
    """Class: int64 rasters with an ordinary nodata value (-9999): reprojection keeps it, and keeps it off valid
    pixels (values far beyond 2**31 stay exact)."""
    data = np.full((1, 64, 64), 2**40 + 7, dtype="int64")
    data[0, :, :5] = -9999
    source = write_tif(tmp_path / "big-counts.tif", data, nodata=-9999)
    cog = create_cog(CreateCogParams(source=str(source), target_crs="EPSG:4326", resampling="nearest"), ctx)
    assert_valid_cog(cog.path)
    with rasterio.open(cog.path) as ds:
        assert ds.nodata == -9999 and ds.dtypes[0] == "int64"
        out = ds.read(1, masked=True)
        assert out.mask.any() and not out.mask.all()
        assert set(np.unique(out.compressed()).tolist()) == {2**40 + 7}
    with pytest.raises(InvalidInput, match=r"big-counts\.tif.*reprojecting its tiles goes through a warped VRT"):
        tile_scheme(TileSchemeParams(source=str(source), target_crs="EPSG:4326", tile_size=256), ctx)
    assert tile_scheme(TileSchemeParams(source=str(source), tile_size=256), ctx).count == 1  # not warped: fine


# ---------------------------------------------------------------- HDF5 containers


def test_hdf5_container_lists_its_subdatasets_and_one_is_selected_by_its_path(tmp_path: Path,
                                                                              ctx: TaskContext) -> None:
    """Class: HDF5 containers (datasets at the root and in groups). The refusal lists the datasets by their HDF5
    path; `subdataset` selects one by that path (or GDAL's full name); a plain HDF5 dataset has no georeferencing,
    so it is then refused for that reason, naming the file."""
    h5 = hdf5_container(tmp_path / "swath.h5")
    with pytest.raises(InvalidInput) as err:
        validate_raster(ValidateRasterParams(source=str(h5)), ctx)
    message = str(err.value)
    assert "swath.h5" in message and "3 subdatasets (HDF5)" in message
    assert "bands, precip, surface/temp" in message and "subdataset=bands" in message
    with pytest.raises(InvalidInput, match=r"swath\.h5.*no coordinate reference system"):
        validate_raster(ValidateRasterParams(source=str(h5), subdataset="surface/temp"), ctx)
    with rasterio.open(h5) as ds:
        full = next(name for name in ds.subdatasets if name.endswith("temp"))
    with pytest.raises(InvalidInput, match=r"swath\.h5.*no coordinate reference system"):
        create_cog(CreateCogParams(source=str(h5), subdataset=full), ctx)
    with pytest.raises(InvalidInput, match=r"no subdataset 'temp'.*bands, precip, surface/temp"):
        validate_raster(ValidateRasterParams(source=str(h5), subdataset="temp"), ctx)
