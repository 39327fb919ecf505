"""Generators of awkward raster inputs for the issue-19 tests, made with GDAL (through rasterio) in tmp_path."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.control import GroundControlPoint

GEOS = "+proj=geos +h=35785831 +lon_0=0 +a=6378137 +b=6356752.31414 +units=m +no_defs"


UTM_GRID = Affine(30, 0, 500000, 0, -30, 4000000)


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32618",
              transform: Affine = UTM_GRID, nodata: float | None = None,
              **profile: object) -> Path:
    meta = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
            "dtype": data.dtype.name, "transform": transform, "nodata": nodata, **profile}
    if crs:
        meta["crs"] = crs
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(data)
    return path


def gcp_tif(path: Path, *, identity: bool = False) -> tuple[Path, list[GroundControlPoint]]:
    """A 64 x 48 raster georeferenced only by 6 GCPs in EPSG:4326 (a slightly rotated, sheared grid); with
    `identity`, a VRT beside it that also declares an identity geotransform (as many scanners write; a GeoTIFF
    cannot hold both, GDAL replaces its GCPs by the geotransform)."""
    points = [(0, 0, 10.0, 50.0), (0, 64, 10.68, 50.05), (48, 0, 9.97, 49.52), (48, 64, 10.66, 49.57),
              (24, 32, 10.33, 49.79), (10, 50, 10.54, 49.94)]
    gcps = [GroundControlPoint(row=r, col=c, x=x, y=y, z=0.0) for r, c, x, y in points]
    data = (np.arange(3 * 48 * 64) % 250 + 1).astype("uint8").reshape(3, 48, 64)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8",
                       gcps=gcps, crs="EPSG:4326", nodata=0) as dst:
        dst.write(data)
    if not identity:
        return path, gcps
    listed = "".join(f'<GCP Id="{i}" Pixel="{c}" Line="{r}" X="{x}" Y="{y}"/>' for i, (r, c, x, y) in enumerate(points))
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>0</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{path.name}</SourceFilename><SourceBand>{b}</SourceBand>'
        "</SimpleSource></VRTRasterBand>" for b in (1, 2, 3))
    vrt = path.with_suffix(".vrt")
    vrt.write_text(f'<VRTDataset rasterXSize="64" rasterYSize="48"><GeoTransform>0, 1, 0, 0, 0, 1</GeoTransform>'
                   f'<GCPList Projection="EPSG:4326">{listed}</GCPList>{bands}</VRTDataset>')
    return vrt, gcps


def _name(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw + b"\0" * (-len(raw) % 4)


def _text_attr(name: str, value: str) -> bytes:
    raw = value.encode()
    return _name(name) + struct.pack(">ii", 2, len(raw)) + raw + b"\0" * (-len(raw) % 4)


WGS84_WKT = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],'
             'UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]')


def netcdf_classic(path: Path, names: tuple[str, ...] = ("precip", "temp"), width: int = 8,
                   height: int = 6) -> Path:
    """A netCDF (classic) file with a float32 variable per name on a lat/lon grid (CF grid mapping): GDAL's
    netCDF driver cannot append a second variable through CreateCopy, so the few header bytes of the classic
    format are written here; GDAL reads two variables back as a container of two subdatasets, and none as a
    raster of 0 bands (both asserted by the tests)."""
    lat = np.linspace(49.5 + 0.5 * (height - 1), 49.5, height).astype(">f8")  # north first
    lon = np.linspace(10.5, 10.5 + width - 1, width).astype(">f8")
    variables = [
        ("crs", [], 4, b"\0\0\0\0", [("grid_mapping_name", "latitude_longitude"), ("spatial_ref", WGS84_WKT)]),
        ("lat", [0], 6, lat.tobytes(), [("units", "degrees_north"), ("standard_name", "latitude")]),
        ("lon", [1], 6, lon.tobytes(), [("units", "degrees_east"), ("standard_name", "longitude")]),
    ]
    variables += [(name, [0, 1], 5, np.full((height, width), i + 1, ">f4").tobytes(),
                   [("units", "1"), ("grid_mapping", "crs")]) for i, name in enumerate(names)]

    def header(offsets: list[int]) -> bytes:
        out = b"CDF\x01" + struct.pack(">i", 0)
        out += struct.pack(">ii", 10, 2) + _name("lat") + struct.pack(">i", height) + _name("lon") \
            + struct.pack(">i", width)
        out += struct.pack(">ii", 12, 1) + _text_attr("Conventions", "CF-1.6")
        out += struct.pack(">ii", 11, len(variables))
        for (name, dims, nc_type, data, attrs), begin in zip(variables, offsets, strict=True):
            out += _name(name) + struct.pack(">i", len(dims)) + b"".join(struct.pack(">i", d) for d in dims)
            out += struct.pack(">ii", 12, len(attrs)) + b"".join(_text_attr(k, v) for k, v in attrs)
            out += struct.pack(">iii", nc_type, len(data), begin)
        return out

    at = len(header([0] * len(variables)))
    offsets = []
    for _, _, _, data, _ in variables:
        offsets.append(at)
        at += len(data)
    path.write_bytes(header(offsets) + b"".join(v[3] for v in variables))
    return path


def netcdf_four_dimensions(path: Path, tmp: Path) -> Path:
    """A netCDF variable cube(time, level, y, x) written by GDAL's netCDF driver (NETCDF_DIM_EXTRA)."""
    data = np.arange(6 * 6 * 8, dtype="float32").reshape(6, 6, 8)
    src = tmp / "cube-src.tif"
    with rasterio.open(src, "w", driver="GTiff", width=8, height=6, count=6, dtype="float32", crs="EPSG:4326",
                       transform=Affine(1, 0, 10, 0, -1, 50)) as dst:
        dst.write(data)
        dst.update_tags(NETCDF_DIM_EXTRA="{time,level}", NETCDF_DIM_time_DEF="{2,6}",
                        NETCDF_DIM_time_VALUES="{0,1}", NETCDF_DIM_level_DEF="{3,6}",
                        NETCDF_DIM_level_VALUES="{1,2,3}")
        for band in range(1, 7):
            dst.update_tags(band, NETCDF_VARNAME="cube")
    rasterio.shutil.copy(src, path, driver="netCDF")
    return path


def wide_int_tif(path: Path, data: np.ndarray, nodata: int, *, crs: str = "EPSG:32618",
                 transform: Affine = UTM_GRID, **creation: object) -> Path:
    """A 64-bit integer GeoTIFF whose nodata is exactly `nodata`, as GDAL writes it (SetNoDataValueAsInt64).
    rasterio cannot write it: it hands nodata to GDAL as a double (beyond 2**53 it reads back wrong). So the pixels
    are written without nodata, wrapped in a VRT that declares the value as text, and GDAL copies the VRT."""
    plain = write_tif(path.with_name(path.stem + ".plain.tif"), data, crs=crs, transform=transform)
    gdal_type = {"int64": "Int64", "uint64": "UInt64"}[data.dtype.name]
    bands = "".join(
        f'<VRTRasterBand dataType="{gdal_type}" band="{b}"><NoDataValue>{nodata:d}</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{plain.name}</SourceFilename><SourceBand>{b}</SourceBand>'
        "</SimpleSource></VRTRasterBand>" for b in range(1, data.shape[0] + 1))
    with rasterio.open(plain) as ds:
        srs, gt = ds.crs.to_wkt(), ", ".join(repr(v) for v in ds.transform.to_gdal())
    vrt = path.with_suffix(".vrt")
    vrt.write_text(f'<VRTDataset rasterXSize="{data.shape[2]}" rasterYSize="{data.shape[1]}">'
                   f"<SRS>{srs.replace('&', '&amp;').replace('<', '&lt;')}</SRS><GeoTransform>{gt}</GeoTransform>"
                   f"{bands}</VRTDataset>")
    rasterio.shutil.copy(str(vrt), str(path), driver="GTiff", **creation)
    vrt.unlink()
    plain.unlink()
    return path


def hdf5_container(path: Path) -> Path:
    """An HDF5 file (h5py) with two 2-D float32 datasets, one in a group, and a 3-D one: GDAL lists them as
    subdatasets (``HDF5:<file>://group/temp``). Plain HDF5 carries no georeferencing GDAL understands."""
    import h5py

    with h5py.File(path, "w") as f:
        f["precip"] = np.full((10, 20), 2.0, "float32")
        f.create_group("surface")["temp"] = np.full((10, 20), 1.5, "float32")
        f["bands"] = np.ones((3, 10, 20), "uint16")
    return path
