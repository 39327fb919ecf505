"""Which files the tile and feature endpoints may read: the `url` query parameter passes geomill's path policy
(service/paths.py) before GDAL sees it. Allowed: zone URIs (bronze://, silver://, gold://), local files inside a
zone folder or a GEOMILL_SOURCE_ROOTS folder, and s3:// / az:// objects inside a remote zone or a configured cloud
prefix. Refused (422): http(s) URLs (no /vsicurl/ to arbitrary hosts), GDAL /vsi names, anything else, and the
state database. What GDAL then opens is a local path or /vsis3/… /vsiaz/… with the storage credentials."""

from __future__ import annotations

from pathlib import Path

from fastapi import Query, Request

from geomill.domain import InvalidInput
from geomill.service.paths import PathPolicy, normalise
from geomill.storage.base import ZONES
from geomill.storage.uris import parse, scheme_of


def tile_policy(request: Request) -> PathPolicy:
    """The read policy of the tile endpoints: the submit policy's roots plus every local zone folder."""
    settings, storage = request.app.state.settings, request.app.state.runtime.storage
    cached: PathPolicy | None = getattr(request.app.state, "tile_policy", None)
    if cached is not None:
        return cached
    local = [Path(r) for r in settings.source_roots if "://" not in r]
    local += [Path(storage.zone_base(z).key) for z in ZONES if storage.zone_base(z).is_local]
    cloud = [parse(r) for r in settings.source_roots if "://" in r] + storage.remote_bases()
    denied: tuple[Path, ...] = ()
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        denied = (Path(url[len("sqlite:///"):]).resolve(),)
    policy = PathPolicy(True, tuple(p.resolve() for p in local), denied, True, tuple(cloud))
    request.app.state.tile_policy = policy
    return policy


def gdal_source(request: Request, url: str) -> str:
    """What GDAL opens for `url` once the policy admits it: a local path, /vsis3/… or /vsiaz/…"""
    storage = request.app.state.runtime.storage
    try:  # a StorageError (a key climbing out of its zone) is an InvalidInput too
        uri = normalise(url, storage, tile_policy(request))
        if uri.startswith("file://"):
            return uri[len("file://"):]
        return str(storage.gdal_path(uri)) if scheme_of(uri) else uri
    except InvalidInput as exc:
        raise InvalidInput(f"url: {exc}", field="url") from None


def local_source(request: Request, url: str) -> str:
    """A file read by Python rather than GDAL (a MosaicJSON, a GeoPackage): admitted by the policy and local."""
    path = gdal_source(request, url)
    if path.startswith("/vsi"):
        raise InvalidInput(f"url: {url!r} is in object storage; this endpoint reads local zones only", field="url")
    return path


def source_path(request: Request, url: str = Query(..., description="a zone URI (silver://…), an s3:// or az:// "
                                                   "object in a configured bucket, or a local file in a zone or "
                                                   "source root")) -> str:
    """titiler's `path_dependency`: the `url` query parameter checked by the path policy."""
    return gdal_source(request, url)


def local_source_path(request: Request, url: str = Query(..., description="a zone URI (silver://mosaics/x.json) or a "
                                                         "local file in a zone or source root")) -> str:
    """The `path_dependency` of endpoints that read the file in Python: the `url` checked, and local."""
    return local_source(request, url)
