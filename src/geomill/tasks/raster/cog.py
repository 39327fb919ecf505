"""Task ``raster.create_cog``: stream a raster into a Cloud-Optimized GeoTIFF in the silver zone.

GDAL's COG driver does the work (``rasterio.shutil.copy(..., driver="COG")``) block by block inside a
``rasterio.Env`` with a fixed ``GDAL_CACHEMAX``, so memory does not grow with the input. Reprojection goes
through a ``WarpedVRT``, which is also streamed.

Defaults:

- compression ``DEFLATE`` with ``PREDICTOR=YES`` (GDAL picks horizontal differencing for integers and the
  floating-point predictor for floats); the predictor is set for LZW, DEFLATE and ZSTD only.
- resampling (used for the overviews and, when reprojecting, for the warp): ``nearest`` when band 1 has a
  color table (palette = categorical classes, which must not be averaged), otherwise ``average``.

Idempotence: the default output name is ``cogs/<stem>-<fingerprint>.tif``, where the fingerprint hashes the
source's name, size and mtime (an object's size and etag in S3/Azure) and the resolved options. An existing local
output that passes ``cog_validate`` is reused (``reused=True``) and not rewritten; in a remote silver zone an
existing object is reused (objects are only ever published whole, after validation, and the key holds the
fingerprint). A new output is written to a local temporary file (beside the output, or in the data folder's
scratch space when silver is remote), validated, then published atomically (``os.replace``, or one upload that
completes at once), so a crash never leaves a half file under the final name. Sources in S3/Azure are read in
place through GDAL (``/vsis3/``, ``/vsiaz/``). An explicit ``output_key`` is trusted as the identity: a valid COG
already there is reused whatever made it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import rasterio
import rasterio.errors
import rasterio.shutil
from pydantic import BaseModel
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, reproject

from geomill.domain import InvalidInput, TaskError, canonical_json
from geomill.engine.context import Storage, TaskContext
from geomill.tasks.raster.cogcheck import validate_cog
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.models import (
    BYTE_ONLY_COMPRESSIONS,
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    PREDICTOR_COMPRESSIONS,
    RESAMPLINGS,
    CreateCogParams,
    normalize_compression,
    normalize_resampling,
    parse_crs,
)
from geomill.tasks.raster.space import (
    check_room,
    estimate_cog_bytes,
    free_bytes,
    gdal_messages,
    looks_out_of_space,
    out_of_space,
)
from geomill.tasks.raster.validate import (
    check_georeferenced,
    check_nodata_rewritable,
    check_readable,
    crs_text,
    has_colormap,
    has_wide_int_nodata,
    open_raster,
    source_name,
)

logger = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1


class CogResult(BaseModel):
    source: str
    cog_uri: str
    path: str
    size_bytes: int
    compression: str
    resampling: str
    crs: str
    epsg: int | None
    width: int
    height: int
    count: int
    dtypes: list[str]
    valid: bool
    reused: bool
    fingerprint: str
    warnings: list[str] = []  # e.g. "no valid pixel": processed, but the COG holds nothing but nodata


@dataclass(frozen=True)
class CogPlan:
    """The resolved options and the output location of one COG."""

    source: str
    compression: str
    resampling: str
    dst_crs: CRS | None  # None: keep the source CRS
    fingerprint: str
    uri: str
    path: Path | None  # the local output file; None when the silver zone is remote
    gcp_method: str | None = None  # "tps": thin-plate spline for a GCP-georeferenced source


GCP_METHODS = ("polynomial", "tps")


def _check_compression_fits(compression: str, src: DatasetReader, source: str) -> None:
    if compression in BYTE_ONLY_COMPRESSIONS and set(src.dtypes) != {"uint8"}:
        raise InvalidInput(
            f"compression {compression} needs 8-bit (uint8) data but {source!r} has {', '.join(set(src.dtypes))}; "
            f"use one of {', '.join(c for c in COMPRESSIONS if c not in BYTE_ONLY_COMPRESSIONS)}",
            field="compression",
        )


def fingerprint(path: Path, compression: str, resampling: str, dst_crs: CRS | None,
                **more: str | None) -> str:
    """A short hash of a local source's identity (name, size, mtime) and the resolved options (`more`: options
    that are hashed only when set, e.g. the subdataset, so older fingerprints stay the same)."""
    stat = path.stat()
    return _fingerprint(path.name, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
                        compression, resampling, dst_crs, **more)


def source_identity(source: str, storage: Storage) -> tuple[str, dict[str, object]]:
    """(file name, identity): size and mtime for a local file, size and etag (else mtime) for an object."""
    if not storage.is_remote(source):
        path = storage.local_path(source)
        stat = path.stat()
        return path.name, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    info = storage.stat(source)
    return info.uri.rsplit("/", 1)[-1], {"size": info.size, "etag": info.etag or info.mtime.isoformat()}


def _fingerprint(name: str, identity: dict[str, object], compression: str, resampling: str,
                 dst_crs: CRS | None, **more: str | None) -> str:
    doc = {
        "v": FINGERPRINT_VERSION, "name": name, **identity,
        "compression": compression, "resampling": resampling, "crs": dst_crs.to_wkt() if dst_crs else None,
        **{k: v for k, v in more.items() if v is not None},
    }
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()[:16]


_FOLDED = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l",
                         "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i"})


def safe_stem(name: str) -> str:
    """A file-name stem in letters, digits, '.', '_', '-' that stays readable: accents folded (``São Paulo`` ->
    ``Sao_Paulo``), and a name in another script kept as its punycode (``Москва`` -> ``xn--80adxhks``) rather than
    dropped."""
    folded = unicodedata.normalize("NFKD", name.translate(_FOLDED))
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    if not folded.isascii():
        words = [w for w in re.split(r"[^\w]+", unicodedata.normalize("NFC", folded)) if w]
        folded = "_".join(w if w.isascii() else "xn--" + w.encode("punycode").decode("ascii") for w in words)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", folded).strip("._-")


def default_output_key(path: Path, fp: str, subdataset: str | None = None) -> str:
    """``cogs/<stem>[-<subdataset>]-<fingerprint>.tif`` with the stem reduced to safe characters."""
    stem = safe_stem(path.stem) or "raster"
    if subdataset:
        stem = f"{stem}-{safe_stem(subdataset.rsplit(':', 1)[-1]) or 'subdataset'}"
    return f"cogs/{stem}-{fp}.tif"


def plan_cog(params: CreateCogParams, src: DatasetReader, identity: tuple[str, dict[str, object]],
             storage: Storage) -> CogPlan:
    """Resolve defaults, check they fit the data, and name the output (`identity`: source_identity)."""
    compression = normalize_compression(params.compression) or DEFAULT_COMPRESSION
    _check_compression_fits(compression, src, params.source)
    resampling = normalize_resampling(params.resampling) or ("nearest" if has_colormap(src) else "average")
    dst_crs = parse_crs(params.target_crs)
    if dst_crs is not None and dst_crs == src.crs:
        dst_crs = None
    gcp_method = (params.gcp_method or "polynomial").strip().lower()
    if gcp_method not in GCP_METHODS:
        raise InvalidInput(f"unknown gcp_method {params.gcp_method!r}; allowed: {', '.join(GCP_METHODS)}",
                           field="gcp_method")
    if src.crs is not None:
        gcp_method = "polynomial"  # only GCP-georeferenced sources are warped by their GCPs
    fp = _fingerprint(identity[0], identity[1], compression, resampling, dst_crs, subdataset=params.subdataset,
                      gcp_method=None if gcp_method == "polynomial" else gcp_method)
    uri = storage.uri_for("silver", params.output_key or default_output_key(Path(identity[0]), fp, params.subdataset))
    return CogPlan(params.source, compression, resampling, dst_crs, fp, uri,
                   None if storage.is_remote(uri) else storage.local_path(uri), gcp_method=gcp_method)


def creation_options(plan: CogPlan, threads: str) -> dict[str, str]:
    """COG driver creation options for `plan`."""
    options = {
        "COMPRESS": plan.compression, "RESAMPLING": RESAMPLINGS[plan.resampling], "BLOCKSIZE": "512",
        "BIGTIFF": "IF_SAFER", "NUM_THREADS": str(threads), "OVERVIEWS": "AUTO",
    }
    if plan.compression in PREDICTOR_COMPRESSIONS:
        options["PREDICTOR"] = "YES"
    return options


def is_valid_cog(path: Path) -> tuple[bool, list[str]]:
    """(valid, errors) from rio-cogeo's validator; a missing file is simply not valid."""
    if not path.is_file():
        return False, [f"{path} does not exist"]
    try:
        valid, errors, _ = validate_cog(path)
    except Exception as exc:  # rio-cogeo raises plain exceptions on unreadable files
        return False, [str(exc)]
    return bool(valid and not errors), list(errors)


def _needs_alpha(src: DatasetReader) -> bool:
    """True when nothing marks invalid pixels, so a warp must add an alpha band for the empty corners."""
    return src.nodata is None and all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums)


def _copy(src: DatasetReader, plan: CogPlan, dst: Path, threads: str) -> None:
    """Stream `src` (through a WarpedVRT when reprojecting) into `dst` with the COG driver."""
    options = creation_options(plan, threads)
    if src.crs is None or plan.dst_crs is not None:
        check_nodata_rewritable(src, plan.source, "warping it")
    if src.crs is None or (plan.dst_crs is not None and has_wide_int_nodata(src)):
        # GCPs (check_georeferenced let nothing else through), or a 64-bit band whose nodata a WarpedVRT drops
        warped = dst.with_name(dst.name + ".warp.tif")  # removed with the temporary file
        warp_to_file(src, plan, warped)
        with rasterio.open(warped) as flat:
            rasterio.shutil.copy(flat, str(dst), driver="COG", **options)
        return
    if plan.dst_crs is None:
        rasterio.shutil.copy(src, str(dst), driver="COG", **options)
        return
    resampling = Resampling[plan.resampling]
    with WarpedVRT(src, crs=plan.dst_crs, resampling=resampling, add_alpha=_needs_alpha(src)) as vrt:
        rasterio.shutil.copy(vrt, str(dst), driver="COG", **options)


def gcp_transformer_options(method: str | None) -> dict[str, str]:
    """GDAL transformer options of the GCP method: a polynomial (GDAL's default) or a thin-plate spline; always
    explicit, so a geotransform the file also declares (often the identity) does not win over the GCPs."""
    return {"SRC_METHOD": "GCP_TPS" if method == "tps" else "GCP_POLYNOMIAL"}


def warp_to_file(src: DatasetReader, plan: CogPlan, dst: Path) -> None:
    """Warp into a tiled GeoTIFF at `dst`, band by band (GDAL's warper works in chunks, so memory stays bounded):
    a GCP-georeferenced raster with GDAL's GCP transformer, to the GCPs' CRS or the target CRS; any other to the
    target CRS (for 64-bit integer bands, whose nodata a WarpedVRT would drop)."""
    gcps, gcp_crs = src.gcps if src.crs is None else (None, src.crs)
    dst_crs = plan.dst_crs or gcp_crs
    extra = gcp_transformer_options(plan.gcp_method) if gcps else {}
    if gcps:
        transform, width, height = calculate_default_transform(
            gcp_crs, dst_crs, src.width, src.height, gcps=gcps, **extra)
    else:
        transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
    alpha = _needs_alpha(src)
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": src.count + int(alpha),
        "dtype": src.dtypes[0], "crs": dst_crs, "transform": transform, "nodata": src.nodata,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(dst, "w", **profile) as out:
        if alpha:
            out.colorinterp = [*src.colorinterp, ColorInterp.alpha]
        out_bands = list(range(1, src.count + 1))
        reproject(
            rasterio.band(src, list(src.indexes)), rasterio.band(out, out_bands), gcps=gcps, src_crs=gcp_crs,
            src_transform=None if gcps else src.transform,
            dst_transform=transform, dst_crs=dst_crs, src_nodata=src.nodata, dst_nodata=src.nodata,
            dst_alpha=src.count + 1 if alpha else 0, resampling=Resampling[plan.resampling], **extra,
        )
        for band in src.indexes:
            out.set_band_description(band, src.descriptions[band - 1] or "")


def write_cog(src: DatasetReader, plan: CogPlan, threads: str, storage: Storage) -> None:
    """Write to a local temporary file (storage.staging: beside a local output, in scratch space for a remote
    one), validate it, then publish it atomically. Refuses up front when the folder has less room than the COG
    needs, and names a disk that filled during the write (OutOfSpace)."""
    needed = estimate_cog_bytes(src, plan.compression)
    folder = plan.path.parent if plan.path is not None else storage.scratch_dir()
    with gdal_messages() as messages:
        try:
            with storage.staging(plan.uri) as tmp:
                folder = tmp.parent
                check_room(folder, needed)
                _copy(src, plan, tmp, threads)
                valid, errors = is_valid_cog(tmp)
                if not valid:  # GDAL may report a failed write only as warnings, leaving a broken file
                    if looks_out_of_space([*messages, *errors], folder, needed):
                        raise out_of_space(folder, needed, free_bytes(folder), [*messages, *errors])
                    raise TaskError(f"GDAL wrote an invalid COG for {plan.source!r}: {'; '.join(errors)}")
        except (TaskError, InvalidInput):
            raise
        except Exception as exc:  # rasterio raises CPLE_* errors that are no RasterioError
            failure = _write_failure(exc, plan, messages, needed, folder)
            if failure is None:
                raise
            raise failure from exc


def _write_failure(exc: Exception, plan: CogPlan, messages: list[str], needed: int,
                   folder: Path) -> TaskError | None:
    """What a failed write was: the disk filled (OutOfSpace), a task error with GDAL's messages, or (None) a bug
    (or a failed upload, which is retried)."""
    said = [*messages, f"{type(exc).__name__}: {exc}"]
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or looks_out_of_space(said, folder, needed):
        return out_of_space(folder, needed, free_bytes(folder), said)
    if not isinstance(exc, rasterio.errors.RasterioError | CPLE_BaseError | OSError):
        return None
    return TaskError(f"writing COG {plan.uri} from {plan.source!r} failed: {'; '.join(said)}")


PREVIEW_SIDE = 512  # the decimated read (from the overviews) that looks for a valid pixel first


def has_valid_pixel(ds: DatasetReader) -> bool:
    """True when some pixel is valid (not nodata, not masked): a decimated read of the mask from the overviews
    first, then, only when that finds none, the full mask block by block (bounded memory)."""
    scale = max(1, math.ceil(max(ds.width, ds.height) / PREVIEW_SIDE))
    preview = ds.dataset_mask(out_shape=(max(1, ds.height // scale), max(1, ds.width // scale)))
    if preview.any():
        return True
    return any(ds.dataset_mask(window=window).any() for _, window in ds.block_windows(1))


def is_reusable(plan: CogPlan, storage: Storage) -> bool:
    """A local output that validates; a remote object that exists (published whole, after validation)."""
    if plan.path is not None:
        return is_valid_cog(plan.path)[0]
    return storage.exists(plan.uri)


def describe(plan: CogPlan, storage: Storage, *, reused: bool) -> CogResult:
    """The result for the COG at `plan.uri` (read back in place when remote)."""
    if plan.path is not None:
        valid, _ = is_valid_cog(plan.path)
        name, where, size = str(plan.path), str(plan.path), plan.path.stat().st_size
    else:
        name, where, size = storage.gdal_path(plan.uri), storage.object_uri(plan.uri), storage.stat(plan.uri).size
        valid = _valid_remote(name)
    with rasterio.open(name) as ds:
        crs, epsg = crs_text(ds)
        return CogResult(
            source=plan.source, cog_uri=plan.uri, path=where, size_bytes=size,
            compression=plan.compression, resampling=plan.resampling, crs=crs, epsg=epsg,
            width=ds.width, height=ds.height, count=ds.count, dtypes=list(ds.dtypes),
            valid=valid, reused=reused, fingerprint=plan.fingerprint,
            warnings=[] if has_valid_pixel(ds) else [
                f"{plan.source!r} has no valid pixel: every pixel is nodata or masked; the COG was written "
                "anyway (its STAC statistics say valid_percent 0)"],
        )


def _valid_remote(name: str) -> bool:
    try:
        valid, errors, _ = validate_cog(name)
    except Exception:  # rio-cogeo raises plain exceptions on unreadable files
        return False
    return bool(valid and not errors)


@contextmanager
def staged_source(src: DatasetReader, params: CreateCogParams, plan: CogPlan,
                  ctx: TaskContext) -> Iterator[DatasetReader]:
    """`src` itself, or, for a remote single-file source of at most ``stage_source_max_mb`` when the scratch space
    has room for it and the COG, the same object downloaded there first (one streamed GET instead of a range
    request per block: on S3 the conversion then runs at local speed; BENCHMARKS.md, object storage). A source
    with side files (.aux.xml, .msk, .ovr) or a subdataset is always read in place, where GDAL finds them."""
    size = ctx.storage.stat(params.source).size if ctx.storage.is_remote(params.source) else None
    if (size is None or params.subdataset is not None or len(src.files) != 1
            or size > ctx.limits.stage_source_max_mb * 2**20):
        yield src
        return
    scratch = ctx.storage.scratch_dir()
    scratch.mkdir(parents=True, exist_ok=True)
    if free_bytes(scratch) < size + estimate_cog_bytes(src, plan.compression):
        logger.info("source read in place: no room to stage it", extra={"task_id": ctx.task_id})
        yield src
        return
    ctx.progress(0.02, f"downloading {params.source} ({size / 2**20:,.0f} MiB)")
    with ctx.storage.scratch_copy(params.source) as path, open_raster(path, params.source) as local:
        yield local


def create_cog(params: CreateCogParams, ctx: TaskContext) -> CogResult:
    """Handler of ``raster.create_cog``: the source read in place (local file, /vsis3/, /vsiaz/), the COG staged
    locally and published to silver (a folder, S3 or Azure)."""
    with gdal_env(ctx, threads=True):
        name = source_name(params.source, ctx.storage)
        with open_raster(name, params.source, params.subdataset) as src:
            check_georeferenced(src, params.source)
            plan = plan_cog(params, src, source_identity(params.source, ctx.storage), ctx.storage)
            reused = is_reusable(plan, ctx.storage)
            if not reused:
                check_readable(src, params.source)
                with staged_source(src, params, plan, ctx) as readable:
                    ctx.progress(0.05, f"writing {plan.uri}")
                    write_cog(readable, plan, ctx.limits.gdal_threads, ctx.storage)
        result = describe(plan, ctx.storage, reused=reused)
    ctx.progress(1.0, "reused existing COG" if reused else "COG written")
    logger.info("cog ready", extra={"task_id": ctx.task_id, "cog_uri": plan.uri, "reused": reused})
    return result
