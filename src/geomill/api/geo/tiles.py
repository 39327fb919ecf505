"""Raster tiles with titiler-core's factories: COGs at /tiles/cog, MosaicJSON mosaics at /tiles/mosaic. The `url` of
every request passes the path policy (geo/sources.py); s3:// and az:// objects are read through /vsis3/ and /vsiaz/
with the storage's credentials. rio-tiler's errors become problem+json answers (a tile outside the data: 404)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from geomill.api import errors
from geomill.api.geo.sources import local_source_path, source_path

# GDAL for tile reads: no folder listing beside the file (a COG needs none), one request per range on /vsis3/
_GDAL = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_NON_CACHED": "/vsis3/:/vsiaz/",
         "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES"}


def gdal_environment() -> dict[str, Any]:
    """titiler's `environment_dependency`: the GDAL options of a tile read."""
    return dict(_GDAL)


def cog_router(prefix: str) -> Any:
    """titiler-core's TilerFactory over the policy-checked `url`."""
    from titiler.core.factory import TilerFactory

    return TilerFactory(router_prefix=prefix, path_dependency=source_path,
                        environment_dependency=gdal_environment).router


def mosaic_router(prefix: str) -> Any:
    """titiler-mosaic's MosaicTilerFactory over cogeo-mosaic's FileBackend: a MosaicJSON file in a local zone."""
    from cogeo_mosaic.backends.file import FileBackend
    from titiler.mosaic.factory import MosaicTilerFactory

    return MosaicTilerFactory(router_prefix=prefix, backend=FileBackend, path_dependency=local_source_path,
                              environment_dependency=gdal_environment).router


def install_errors(app: FastAPI) -> None:
    """rio-tiler's and titiler's errors as problems: not-found kinds 404, bad parameters 400."""
    from rio_tiler import errors as rt
    from titiler.core.errors import BadRequestError, TileNotFoundError

    table: list[tuple[type[Exception], int, str]] = [
        (rt.TileOutsideBounds, 404, "Not found"), (TileNotFoundError, 404, "Not found"),
        (rt.InvalidBandName, 404, "Not found"), (rt.InvalidAssetName, 404, "Not found"),
        (BadRequestError, 400, "Bad request"), (rt.MissingBands, 400, "Bad request"),
        (rt.MissingAssets, 400, "Bad request"), (rt.InvalidColorFormat, 400, "Bad request"),
        (rt.InvalidExpression, 400, "Bad request"), (rt.InvalidFormat, 400, "Bad request"),
    ]
    for exc_class, status, title in table:
        app.add_exception_handler(exc_class, _handler(status, title))


def _handler(status: int, title: str) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        return errors.problem(request, status, title, str(exc))

    return handle
