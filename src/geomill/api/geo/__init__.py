"""Geospatial faces mounted in the API app (docs/stac-api.md): raster tiles at /tiles/cog and /tiles/mosaic
(titiler-core), vector tiles and GeoJSON at /tiles/vector and /tiles/features, and the STAC API at /stac
(stac-fastapi-pgstac on PostgreSQL, the static catalog read-only otherwise). Every route needs a read key.

Mounted when the app is created, never on `import geomill.api`: titiler, rasterio and stac-fastapi load then."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI

from geomill.api.auth import require
from geomill.catalog.base import is_postgres
from geomill.config import Settings

COG_PREFIX, MOSAIC_PREFIX, STAC_PREFIX = "/tiles/cog", "/tiles/mosaic", "/stac"


@dataclass
class GeoMount:
    """What the app's lifespan opens and closes: the pgSTAC API's pool (None in embedded mode)."""

    settings: Settings
    stac_app: FastAPI | None = None

    async def open(self, runtime: Any) -> None:
        if self.stac_app is not None:
            from geomill.api.geo.stac_pgstac import open_pool

            await open_pool(self.stac_app, self.settings, runtime)

    async def close(self) -> None:
        if self.stac_app is not None:
            from geomill.api.geo.stac_pgstac import close_pool

            await close_pool(self.stac_app)


def mount(app: FastAPI, settings: Settings) -> GeoMount:
    """Add the tile and STAC routes to `app`."""
    from geomill.api import errors
    from geomill.api.geo import tiles, vector

    read = [Depends(require("read"))]
    app.include_router(tiles.cog_router(COG_PREFIX), prefix=COG_PREFIX, tags=["tiles"], dependencies=read)
    app.include_router(tiles.mosaic_router(MOSAIC_PREFIX), prefix=MOSAIC_PREFIX, tags=["tiles"], dependencies=read)
    app.include_router(vector.router, dependencies=read)
    tiles.install_errors(app)
    geo = GeoMount(settings)
    if is_postgres(settings.resolved_database_url):
        from geomill.api.geo.stac_pgstac import pgstac_app

        geo.stac_app = pgstac_app(settings, app, STAC_PREFIX)
        errors.install_domain(geo.stac_app)
        app.mount(STAC_PREFIX, geo.stac_app)
    else:
        from geomill.api.geo import stac_static

        app.include_router(stac_static.router, dependencies=read)
    return geo


__all__ = ["GeoMount", "mount"]
