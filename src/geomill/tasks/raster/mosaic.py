"""Task ``raster.mosaic``: one MosaicJSON and one GDAL VRT over a set of COGs in the silver zone.

Outputs (both replaced atomically, both byte-identical for the same inputs):

- ``silver://mosaics/<name>.json``: a MosaicJSON (cogeo-mosaic, quadkeys in WebMercatorQuad) whose assets are the
  COGs' local paths, or, for COGs in S3/Azure, what another machine follows to read them (``storage.href``: the
  object's ``s3://``/``az://`` URI, the public base URL + key, or a signed URL), for a tile server such as titiler.
- ``silver://mosaics/<name>.vrt``: a GDAL VRT that reads the whole mosaic as one raster, with paths relative to the
  VRT for local files (the ``silver`` folder can be moved as a whole); in S3/Azure it names the COGs by GDAL's
  ``/vsis3/<bucket>/<key>`` or ``/vsiaz/<container>/<key>`` (a ``../`` path is not a key GDAL can sign requests
  for). Its grid is the union of the COGs' bounds at the finest of their resolutions, in their common CRS.

Both are written through the storage (atomic: a rename locally, one PUT in S3/Azure); COGs are read in place.

Where COGs overlap, the first one in ``cogs`` wins, in both files (MosaicJSON readers take the first asset; the VRT
lists its sources last to first because GDAL draws later sources on top). Pixels a COG marks as invalid (nodata,
an internal mask or an alpha band) never cover another COG's valid pixels in the VRT.

All COGs must share CRS, band count and data types: the callers (``process_raster_collection``,
``process_large_raster``) guarantee it, and a mismatch here is an InvalidInput naming the odd COG.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import morecantile
import rasterio
from affine import Affine
from morecantile.utils import truncate_coordinates
from pydantic import BaseModel
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.warp import transform_bounds

from geomill.catalog.static import check_id
from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import Storage, TaskContext
from geomill.storage.base import ZONES
from geomill.tasks.raster.compat import Shape, check_compatible
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.models import MosaicParams
from geomill.tasks.raster.validate import open_raster, source_name

logger = logging.getLogger(__name__)

MOSAICS_KEY = "mosaics"
MOSAICJSON_VERSION = "0.0.3"
WEB_MERCATOR = "WebMercatorQuad"
EPSILON = 1e-4  # in pixels: offsets this close to an integer are grid-aligned, off only by float rounding
GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
    "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64",
    "complex64": "CFloat32", "complex128": "CFloat64",
}
# GDAL lists a file's folder on open to look for side-car files; COGs have none, and listing a folder of thousands
# of tiles for each of them makes reading N COGs O(N^2)
NO_FOLDER_LISTING = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
YCBCR = {ColorInterp.Y: "YCbCr_Y", ColorInterp.Cb: "YCbCr_Cb", ColorInterp.Cr: "YCbCr_Cr"}


class MosaicResult(BaseModel):
    mosaicjson_uri: str
    mosaicjson_path: str
    vrt_uri: str
    vrt_path: str
    count: int
    bounds: list[float]  # west, south, east, north in EPSG:4326
    crs: str
    width: int
    height: int
    resolution: list[float]
    minzoom: int
    maxzoom: int


@dataclass(frozen=True)
class CogInfo:
    """What the VRT and the MosaicJSON need to know of one COG, read in one open."""

    uri: str
    path: str  # what GDAL opens: a local path, /vsis3/… or /vsiaz/…
    href: str  # what a MosaicJSON names: the local path, or storage.href (s3://…, public or signed URL)
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    colorinterp: tuple[ColorInterp, ...]
    mask_flags: tuple[tuple[MaskFlags, ...], ...]
    block_shapes: tuple[tuple[int, int], ...]
    colormap: dict[int, tuple[int, ...]] | None
    bounds_wgs84: tuple[float, float, float, float]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return left, top + self.height * self.transform.e, left + self.width * self.transform.a, top


@dataclass(frozen=True)
class Grid:
    """The VRT's pixel grid: north-up, origin at the union's top-left corner, the finest resolution."""

    left: float
    top: float
    xres: float
    yres: float
    width: int
    height: int

    def offsets(self, cog: CogInfo) -> tuple[float, float, float, float]:
        """DstRect of `cog` in this grid: xoff, yoff, xsize, ysize (integers when the COG is grid-aligned)."""
        left, bottom, right, top = cog.bounds
        return (_snap((left - self.left) / self.xres), _snap((self.top - top) / self.yres),
                _snap((right - left) / self.xres), _snap((top - bottom) / self.yres))


def _snap(value: float) -> float:
    nearest = round(value)
    return float(nearest) if abs(value - nearest) < EPSILON else value


def _number(value: float) -> str:
    """Integers without a decimal point, other numbers with full precision (repr), nan as GDAL reads it."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def read_cog(uri: str, storage: Storage) -> CogInfo:
    """Open one COG and describe it; InvalidInput when it is missing, unreadable, rotated or has no CRS."""
    path = source_name(uri, storage)
    with open_raster(path, uri) as ds:
        if ds.crs is None:
            raise InvalidInput(f"COG {uri!r} has no CRS; a mosaic needs georeferenced inputs", field="cogs")
        if ds.transform.b != 0 or ds.transform.d != 0 or ds.transform.e >= 0:
            raise InvalidInput(f"COG {uri!r} is rotated or not north-up; a mosaic needs north-up grids", field="cogs")
        colormap = None
        if ds.colorinterp[0] is ColorInterp.palette:
            colormap = ds.colormap(1)
        return CogInfo(
            uri=uri, path=path, href=storage.href(uri) if storage.is_remote(uri) else path, crs=ds.crs, transform=ds.transform, width=ds.width, height=ds.height,
            count=ds.count, dtypes=tuple(ds.dtypes), nodata=ds.nodata, colorinterp=tuple(ds.colorinterp),
            mask_flags=tuple(tuple(f) for f in ds.mask_flag_enums), block_shapes=tuple(ds.block_shapes),
            colormap=colormap, bounds_wgs84=transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21),
        )


def crs_key(crs: CRS) -> str:
    """``EPSG:<code>`` when the CRS has one, else its WKT: equal CRSs compare equal."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def check_uniform(cogs: list[CogInfo]) -> None:
    """Refuse a set of COGs that cannot be one raster: different CRS, band count or data types."""
    shapes = [Shape(crs=crs_key(c.crs), count=c.count, dtypes=c.dtypes) for c in cogs]
    check_compatible([c.uri for c in cogs], shapes, field="cogs", what="A mosaic's COGs")


def mosaic_grid(cogs: list[CogInfo]) -> Grid:
    """The union of the COGs' bounds at the finest resolution among them."""
    xres = min(abs(c.transform.a) for c in cogs)
    yres = min(abs(c.transform.e) for c in cogs)
    left = min(c.bounds[0] for c in cogs)
    bottom = min(c.bounds[1] for c in cogs)
    right = max(c.bounds[2] for c in cogs)
    top = max(c.bounds[3] for c in cogs)
    width = max(1, math.ceil(_snap((right - left) / xres)))
    height = max(1, math.ceil(_snap((top - bottom) / yres)))
    return Grid(left, top, xres, yres, width, height)


def _common_nodata(cogs: list[CogInfo]) -> float | None:
    """The nodata value every COG shares, else None (the VRT then declares none)."""
    values = {"nan" if c.nodata is not None and math.isnan(c.nodata) else c.nodata for c in cogs}
    return cogs[0].nodata if len(values) == 1 else None


def _colorinterp_name(ci: ColorInterp) -> str:
    return YCBCR.get(ci, ci.name.capitalize() if ci.name.islower() else ci.name)


def source_href(cog: CogInfo, vrt_path: str) -> tuple[str, str]:
    """(relativeToVRT, path): relative for local files in a storage zone, else absolute (a local path, or GDAL's
    /vsis3/…, /vsiaz/… name: a relative ``../`` path inside a bucket is not a key GDAL can sign requests for)."""
    zoned = "://" in cog.uri and cog.uri.split("://", 1)[0] in ZONES
    if zoned and not cog.path.startswith("/vsi") and not vrt_path.startswith("/vsi"):
        return "1", posixpath.relpath(cog.path, posixpath.dirname(vrt_path))
    return "0", cog.path


def _source(band: ET.Element, cog: CogInfo, index: int, grid: Grid, vrt_path: str) -> None:
    """One source of band `index` (1-based): Simple when every pixel is valid, else Complex skipping invalid ones."""
    flags = cog.mask_flags[index - 1]
    is_alpha = cog.colorinterp[index - 1] is ColorInterp.alpha
    simple = MaskFlags.all_valid in flags and not is_alpha
    src = ET.SubElement(band, "SimpleSource" if simple else "ComplexSource")
    relative, href = source_href(cog, vrt_path)
    ET.SubElement(src, "SourceFilename", relativeToVRT=relative).text = href
    ET.SubElement(src, "SourceBand").text = str(index)
    block_y, block_x = cog.block_shapes[index - 1]
    ET.SubElement(src, "SourceProperties", RasterXSize=str(cog.width), RasterYSize=str(cog.height),
                  DataType=GDAL_TYPES[cog.dtypes[index - 1]], BlockXSize=str(block_x), BlockYSize=str(block_y))
    ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(cog.width), ySize=str(cog.height))
    xoff, yoff, xsize, ysize = grid.offsets(cog)
    ET.SubElement(src, "DstRect", xOff=_number(xoff), yOff=_number(yoff), xSize=_number(xsize), ySize=_number(ysize))
    if is_alpha:
        ET.SubElement(src, "NODATA").text = "0"  # transparent pixels do not cover what lies below
    elif MaskFlags.nodata in flags and cog.nodata is not None:
        ET.SubElement(src, "NODATA").text = _number(cog.nodata)
    elif not simple:
        ET.SubElement(src, "UseMaskBand").text = "true"  # internal mask or alpha band of the COG


def _needs_mask_band(cogs: list[CogInfo], nodata: float | None) -> bool:
    """A dataset mask is needed when some COG marks invalid pixels by an internal mask, or by a nodata value the
    VRT cannot declare because the COGs do not share one. Alpha bands are masks themselves."""
    if any(ColorInterp.alpha in c.colorinterp for c in cogs):
        return False
    masked = [c for c in cogs if MaskFlags.all_valid not in c.mask_flags[0]]
    return bool(masked) and (nodata is None or any(MaskFlags.per_dataset in c.mask_flags[0] for c in masked))


def _mask_band(root: ET.Element, cogs: list[CogInfo], grid: Grid, vrt_path: str) -> None:
    """The VRT's dataset mask: each COG's mask, first COG on top, invalid pixels never covering valid ones."""
    mask = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
    for cog in reversed(cogs):
        src = ET.SubElement(mask, "ComplexSource")
        relative, href = source_href(cog, vrt_path)
        ET.SubElement(src, "SourceFilename", relativeToVRT=relative).text = href
        ET.SubElement(src, "SourceBand").text = "mask,1"
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(cog.width), ySize=str(cog.height))
        xoff, yoff, xsize, ysize = grid.offsets(cog)
        ET.SubElement(src, "DstRect", xOff=_number(xoff), yOff=_number(yoff), xSize=_number(xsize),
                      ySize=_number(ysize))
        ET.SubElement(src, "NODATA").text = "0"


def vrt_xml(cogs: list[CogInfo], grid: Grid, vrt_path: str) -> str:
    """The VRT document for `cogs` on `grid`; sources last to first so the first COG is drawn on top."""
    first = cogs[0]
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = first.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        _number(v) for v in (grid.left, grid.xres, 0.0, grid.top, 0.0, -grid.yres))
    nodata = _common_nodata(cogs)
    for index in range(1, first.count + 1):
        band = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[first.dtypes[index - 1]], band=str(index))
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = _number(nodata)
        ET.SubElement(band, "ColorInterp").text = _colorinterp_name(first.colorinterp[index - 1])
        if index == 1 and first.colormap:
            table = ET.SubElement(band, "ColorTable")
            for value in range(max(first.colormap) + 1):
                rgba = tuple(first.colormap.get(value, (0, 0, 0, 0))) + (255,)
                ET.SubElement(table, "Entry", c1=str(rgba[0]), c2=str(rgba[1]), c3=str(rgba[2]), c4=str(rgba[3]))
        for cog in reversed(cogs):
            _source(band, cog, index, grid, vrt_path)
    if _needs_mask_band(cogs, nodata):
        _mask_band(root, cogs, grid, vrt_path)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def footprint(cog: CogInfo, href: str, tms: morecantile.TileMatrixSet) -> dict[str, Any]:
    """The COG's WGS84 bounding box as a GeoJSON feature, clipped to the TMS's latitude range (as cogeo-mosaic)."""
    west, south, east, north = cog.bounds_wgs84
    corners = ((west, north), (west, south), (east, south), (east, north))
    ring = [truncate_coordinates(x, y, tms.bbox) for x, y in corners]
    ring.append(ring[0])
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"path": href}}


def _mosaicjson_class() -> Any:
    """cogeo-mosaic's MosaicJSON; importing it sets the ROOT logger to INFO (cogeo_mosaic.utils), undone here."""
    root = logging.getLogger()
    level = root.level
    from cogeo_mosaic.mosaic import MosaicJSON

    root.setLevel(level)
    return MosaicJSON


def zoom_range(vrt_path: str) -> tuple[int, int]:
    """WebMercatorQuad min and max zoom of the whole mosaic, as rio-tiler computes them for one dataset."""
    from rio_tiler.io import Reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no overviews": a VRT has none, the zooms are still right
        with Reader(vrt_path, tms=morecantile.tms.get(WEB_MERCATOR)) as reader:
            return reader.minzoom, reader.maxzoom


def mosaicjson_text(
    cogs: list[CogInfo], name: str, zooms: tuple[int, int], quadkey_zoom: int | None
) -> tuple[str, list[float]]:
    """The MosaicJSON document as text (tiles sorted by quadkey) and its WGS84 bounds."""
    tms = morecantile.tms.get(WEB_MERCATOR)
    features = [footprint(c, c.href, tms) for c in cogs]
    mosaic = _mosaicjson_class().from_features(
        features, zooms[0], zooms[1], quadkey_zoom=quadkey_zoom, version=MOSAICJSON_VERSION, quiet=True,
    )
    mosaic.name = name
    doc = mosaic.model_dump(mode="json", exclude_none=True)
    doc["tiles"] = {key: doc["tiles"][key] for key in sorted(doc["tiles"])}
    return json.dumps(doc, indent=2) + "\n", [float(v) for v in doc["bounds"]]


def create_mosaic(params: MosaicParams, ctx: TaskContext) -> MosaicResult:
    """Handler of ``raster.mosaic``."""
    name = check_id(params.name, "mosaic name")
    json_uri = ctx.storage.uri_for("silver", f"{MOSAICS_KEY}/{name}.json")
    vrt_uri = ctx.storage.uri_for("silver", f"{MOSAICS_KEY}/{name}.vrt")
    storage = ctx.storage
    vrt_name = storage.gdal_path(vrt_uri)  # the VRT's own name: relative source paths are resolved against it
    cogs: list[CogInfo] = []
    with gdal_env(ctx), rasterio.Env(**NO_FOLDER_LISTING):
        for i, uri in enumerate(params.cogs):
            if ctx.cancelled:
                raise TaskError("cancelled while reading the COGs")
            cogs.append(read_cog(uri, storage))
            if i % 100 == 0:
                ctx.progress(0.6 * (i + 1) / len(params.cogs), f"read {i + 1} of {len(params.cogs)} COGs")
        check_uniform(cogs)
        grid = mosaic_grid(cogs)
        storage.write_bytes(vrt_uri, vrt_xml(cogs, grid, vrt_name).encode("utf-8"))  # atomic, local or remote
        ctx.progress(0.7, f"VRT written: {vrt_uri}")
        zooms = zoom_range(vrt_name)  # read back where it was published (through /vsis3/, /vsiaz/ when remote)
    text, bounds = mosaicjson_text(cogs, name, zooms, params.quadkey_zoom)
    storage.write_bytes(json_uri, text.encode("utf-8"))
    ctx.progress(1.0, f"MosaicJSON written: {json_uri}")
    logger.info("mosaic ready", extra={"task_id": ctx.task_id, "vrt_uri": vrt_uri, "count": len(cogs)})
    return MosaicResult(
        mosaicjson_uri=json_uri, mosaicjson_path=storage.object_uri(json_uri), vrt_uri=vrt_uri,
        vrt_path=storage.object_uri(vrt_uri),
        count=len(cogs), bounds=bounds, crs=cogs[0].crs.to_string(), width=grid.width, height=grid.height,
        resolution=[grid.xres, grid.yres], minzoom=zooms[0], maxzoom=zooms[1],
    )
