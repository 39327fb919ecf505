"""Finding what to read in a source: a file, a zip holding one, a shapefile and its sidecars, a GeoPackage's layers.

A source in object storage (S3, Azure Blob) is read in place through GDAL's /vsis3/ or /vsiaz/ when its format
streams (GeoJSON, FlatGeobuf, CSV, KML, GML...). Formats that need random access (GeoPackage and other SQLite files,
zip archives, GeoParquet) and shapefiles (several files: GDAL would list the object's folder for each) are fetched
first into one private scratch folder, removed when reading ends: over HTTP range requests GDAL's SQLite reader is
~100x slower than a download (docs/vector.md), and a deflated zip member cannot be range-read at all.

Every refusal is an InvalidInput naming the source and the reason, raised before any output is written.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError
from pyogrio.util import vsi_path as pyogrio_vsi_path

from geomill.domain import InvalidInput
from geomill.engine.context import ObjectInfo, Storage

VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".fgb", ".parquet", ".geoparquet", ".kml", ".csv",
                   ".geojsonl", ".geojsons", ".gml", ".tab")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
ALL_LAYERS = "*"
FETCHED_SUFFIXES = (".gpkg", ".sqlite", ".db", ".zip", ".parquet", ".geoparquet", ".shp")  # fetched first
SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")
# GDAL keeps what it read of an object after closing it, for the life of the process: a replaced object would then
# be read stale (seen with a GeoJSON rewritten between two jobs). Not cached past close (pyogrio's libgdal only).
NON_CACHED = {"CPL_VSIL_CURL_NON_CACHED": "/vsis3/:/vsiaz/"}


@dataclass(frozen=True)
class SourceLayer:
    """One layer to load: what pyogrio opens (a path or /vsizip/ path), the layer name, and a label for messages."""

    path: str
    layer: str | None
    label: str
    is_csv: bool = False
    is_parquet: bool = False  # GeoParquet is read with pyarrow (this GDAL build has no Parquet driver)


@dataclass(frozen=True)
class SourceFile:
    """The source as GDAL opens it: `path` is a local path (the file, or a fetched copy of an object) or a /vsis3/,
    /vsiaz/ name read in place; `info` its identity (size, etag or mtime) for the load key and the STAC datetime."""

    path: str
    local: Path | None
    suffix: str
    info: ObjectInfo
    remote: bool


@contextmanager
def open_source(source: str, storage: Storage) -> Iterator[SourceFile]:
    """The source ready for GDAL: a local file as it is, an object in place or fetched (see the module doc). A
    fetched copy lives in a private folder under the scratch space, deleted on exit whatever happens."""
    if not storage.is_remote(source):
        path = resolve_file(source, storage)
        yield SourceFile(str(path), path, path.suffix.lower(), storage.stat(source), remote=False)
        return
    info = _stat_remote(source, storage)
    suffix = PurePosixPath(info.uri).suffix.lower()
    if suffix not in FETCHED_SUFFIXES:
        pyogrio.set_gdal_config_options(NON_CACHED)
        yield SourceFile(storage.gdal_path(source), None, suffix, info, remote=True)
        return
    parts = {suffix: source, **(_remote_sidecars(source, storage) if suffix == ".shp" else {})}
    folder = storage.scratch_dir() / f"vector-{uuid.uuid4().hex}"
    try:  # plain local names: special characters of the object's name never reach GDAL
        for ext, uri in parts.items():
            storage.fetch(uri, folder / ("source" + ext))
        local = folder / ("source" + suffix)
        yield SourceFile(str(local), local, suffix, info, remote=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stat_remote(source: str, storage: Storage) -> ObjectInfo:
    try:
        info = storage.stat(source)
    except InvalidInput as exc:  # missing object or bucket, refused credentials: the message names the URI
        raise InvalidInput(f"vector source {source!r} cannot be read: {exc}", field="source") from None
    if info.size == 0:
        raise InvalidInput(f"vector source {source!r} is an empty file (0 bytes)", field="source")
    return info


def _remote_sidecars(source: str, storage: Storage) -> dict[str, str]:
    """The sidecars beside a remote .shp (extension -> URI, lower or upper case), found with HEAD requests, not a
    listing of its folder; the .shx and .dbf must be there."""
    stem, name = source[: -len(".shp")], PurePosixPath(source).name
    found: dict[str, str] = {}
    for ext in SHAPEFILE_SIDECARS:
        uri = next((u for u in (stem + ext, stem + ext.upper()) if storage.exists(u)), None)
        if uri is not None:
            found[ext] = uri
    _check_shapefile_parts(source, [name[: -len(".shp")] + ext for ext in found], name)
    return found


def resolve_file(source: str, storage: Storage) -> Path:
    """The local file behind `source`; missing, a folder or empty is refused."""
    path = storage.local_path(source)  # a storage error is an InvalidInput already
    if not path.exists():
        raise InvalidInput(f"vector source {source!r} not found: no file at {path}", field="source")
    if path.is_dir() and path.suffix.lower() == ".gdb":
        return path  # an Esri File Geodatabase is a folder (read by GDAL's OpenFileGDB driver)
    if not path.is_file():
        raise InvalidInput(f"vector source {source!r} is not a file ({path})", field="source")
    if path.stat().st_size == 0:
        raise InvalidInput(f"vector source {source!r} is an empty file (0 bytes)", field="source")
    return path


def _check_shapefile_parts(source: str, names: list[str], shp: str) -> None:
    """A shapefile needs its .shx (index) and .dbf (attributes) beside the .shp."""
    stem = shp[: -len(".shp")].lower()
    present = {n.lower() for n in names}
    missing = [ext for ext in (".shx", ".dbf") if stem + ext not in present]
    if missing:
        raise InvalidInput(
            f"shapefile {shp!r} in {source!r} is incomplete: missing {' and '.join(missing)} "
            "(a shapefile needs its .shp, .shx and .dbf files side by side; zip them together)", field="source")


def _zip_members(path: Path, source: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [n for n in zf.namelist() if not n.endswith("/") and not PurePosixPath(n).name.startswith(".")]
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"vector source {source!r} is not a readable zip file: {exc}", field="source") from exc


def _vector_in_zip(path: Path, source: str, layer: str | None) -> tuple[str, bool]:
    """The /vsizip/ path of the one vector file inside a zip (a shapefile is checked for its sidecars)."""
    members = _zip_members(path, source)
    vectors = [n for n in members if n.lower().endswith(VECTOR_SUFFIXES) and "__macosx" not in n.lower()]
    gdbs = sorted({n[: n.lower().index(".gdb/") + 4] for n in members if ".gdb/" in n.lower()})
    if gdbs and not vectors:  # a zipped File Geodatabase: its folder is the dataset
        if len(gdbs) > 1:
            raise InvalidInput(f"zip {source!r} holds several File Geodatabases ({', '.join(gdbs)}); zip one",
                               field="source")
        return f"/vsizip/{path}/{gdbs[0]}", False
    if not vectors:
        listed = ", ".join(members[:10]) or "nothing"
        raise InvalidInput(f"zip {source!r} holds no vector file (found: {listed}); expected one of "
                           f"{', '.join(VECTOR_SUFFIXES)}", field="source")
    if len(vectors) > 1 and layer not in (None, ALL_LAYERS):
        chosen = [v for v in vectors if PurePosixPath(v).stem == layer or PurePosixPath(v).name == layer]
        vectors = chosen or vectors
    if len(vectors) > 1:
        raise InvalidInput(f"zip {source!r} holds several vector files ({', '.join(vectors)}); name one with the "
                           "layer parameter (its file name without extension)", field="layer")
    inner = vectors[0]
    if inner.lower().endswith(".shp"):
        _check_shapefile_parts(source, members, inner)
    return f"/vsizip/{path}/{inner}", inner.lower().endswith(CSV_SUFFIXES)


def gdal_path(path: Path) -> str:
    """A name of the local file (or .gdb folder) `path` that pyogrio passes to GDAL unchanged.

    pyogrio parses its path argument as a URI: ``!`` splits an archive from its member and ``;`` starts URI
    parameters, so ``a!b.gpkg`` would open ``b.gpkg``. Such a file is opened through symbolic links with a plain name
    (``source`` + the suffix) in a private temporary folder, one link per file of the same stem (a shapefile's
    sidecars follow it)."""
    text = str(path)
    if pyogrio_vsi_path(text) == text:
        return text
    folder = Path(tempfile.gettempdir()) / "geomill-gdal-names" / hashlib.sha256(text.encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    parts = [path] if path.is_dir() else [p for p in path.parent.iterdir() if p.stem == path.stem]
    for part in parts:
        link = folder / ("source" + part.suffix)
        with suppress(FileExistsError):
            link.symlink_to(part.resolve(), target_is_directory=part.is_dir())
    return str(folder / ("source" + path.suffix))


def _list_layers(path: str, source: str) -> list[tuple[str, str | None]]:
    try:
        return [(str(name), gtype) for name, gtype in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"vector source {source!r} is not a vector file GDAL can read, or it is damaged: "
                           f"{exc}", field="source") from exc


def find_layers(source: str, opened: SourceFile, layer: str | None) -> list[SourceLayer]:
    """The layers to load from `source` (opened by `open_source`): the one named by `layer`, every spatial layer for
    ``*``, else the only one."""
    path, suffix = opened.local, opened.suffix
    if suffix in PARQUET_SUFFIXES:
        assert path is not None  # fetched: pyarrow reads local files
        return [SourceLayer(str(path), None, repr(source), is_parquet=True)]
    if suffix == ".zip":
        assert path is not None
        open_path, is_csv = _vector_in_zip(path, source, layer)
        named_file = not open_path.lower().endswith(".gdb") and PurePosixPath(open_path).stem == layer
        layer = None if layer and layer != ALL_LAYERS and named_file else layer
    elif path is None:  # an object read in place (/vsis3/..., /vsiaz/...): pyogrio passes it to GDAL unchanged
        open_path, is_csv = opened.path, suffix in CSV_SUFFIXES
    else:
        open_path, is_csv = gdal_path(path), suffix in CSV_SUFFIXES
        if suffix == ".shp":
            _check_shapefile_parts(source, [p.name for p in path.parent.iterdir()], path.name)
    layers = _list_layers(open_path, source)
    if not layers:
        raise InvalidInput(f"vector source {source!r} has no layers", field="source")
    names = [name for name, _ in layers]
    if layer == ALL_LAYERS:
        chosen = [name for name, gtype in layers if gtype is not None or is_csv] or names
    elif layer is not None:
        if layer not in names:
            raise InvalidInput(f"layer {layer!r} not found in {source!r}; its layers are: {', '.join(names)}",
                               field="layer")
        chosen = [layer]
    elif len(layers) == 1:
        chosen = names
    else:
        raise InvalidInput(f"{source!r} has {len(layers)} layers ({', '.join(names[:20])}); choose one with "
                           f"layer=<name>, or layer='{ALL_LAYERS}' to load each into its own table", field="layer")
    return [SourceLayer(open_path, name if len(layers) > 1 or layer else None,
                        f"{source!r}" + (f" layer {name!r}" if len(layers) > 1 else ""), is_csv) for name in chosen]
