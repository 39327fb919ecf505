"""The STAC API on PostgreSQL deployments: stac-fastapi-pgstac over the pgSTAC schema geomill fills, mounted at
/stac as its own ASGI app. Read-only (no transactions extension); its asyncpg pool holds at most
`STAC_POOL_SIZE` connections, opened and closed by geomill's app lifespan (a mounted app's own lifespan never
runs). The same API keys apply (read scope), and items get `xyz`/`tilejson` links to /tiles/cog."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import Depends, FastAPI

from geomill.api.auth import require
from geomill.api.geo.links import with_tile_links
from geomill.config import Settings

STAC_POOL_SIZE = 2  # asyncpg connections of the STAC API per HTTP process (docs/stac-api.md, connection budget)


def postgres_settings(database_url: str, app_name: str) -> Any:
    """stac-fastapi-pgstac's connection settings from geomill's database URL, with the small pool."""
    from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings

    parts = urlsplit(database_url)
    return PostgresSettings(pguser=unquote(parts.username or "postgres"), pgpassword=unquote(parts.password or ""),
                            pghost=parts.hostname or "127.0.0.1", pgport=parts.port or 5432,
                            pgdatabase=parts.path.lstrip("/") or "postgres", db_min_conn_size=1,
                            db_max_conn_size=STAC_POOL_SIZE,
                            server_settings=ServerSettings(application_name=f"{app_name}/stac"[:63]))


def pgstac_app(settings: Settings, main: FastAPI, prefix: str) -> FastAPI:
    """The stac-fastapi-pgstac application, its requests admitted by geomill's API keys (read scope)."""
    from stac_fastapi.pgstac.app import instantiate_api
    from stac_fastapi.pgstac.config import Settings as StacSettings
    from stac_fastapi.pgstac.core import CoreCrudClient

    public_url = settings.public_url

    class TiledClient(CoreCrudClient):
        """pgSTAC's client whose items link to the COG tile endpoint."""

        async def _search_base(self, search_request: Any, request: Any) -> Any:
            found = await super()._search_base(search_request, request)
            base = public_url or str(request.base_url).rstrip("/").removesuffix("/stac")
            found["features"] = [with_tile_links(f, base) for f in found.get("features", [])]
            return found

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:  # the pool is geomill's lifespan's business (see open_pool)
        yield

    stac_settings = StacSettings(enable_transactions_extensions=False, stac_fastapi_title="geomill",
                                 stac_fastapi_description="Products made by geomill (pgSTAC)",
                                 openapi_url="/api", docs_url="/api.html", cors_origins=[])
    api = instantiate_api(client=TiledClient, lifespan=lifespan, settings=stac_settings)
    api.add_route_dependencies(scopes=[{"path": "*", "method": "*"}], dependencies=[Depends(require("read"))])
    app: FastAPI = api.app
    app.state.router_prefix = prefix  # links are built from it: the mounted app's base URL is the main app's
    app.state.geomill_settings = main.state.settings  # what require() reads (state.settings is stac-fastapi's)
    app.state.key_cache = main.state.key_cache
    return app


async def open_pool(app: FastAPI, settings: Settings, runtime: Any) -> None:
    """Install pgSTAC if needed, then the STAC API's pool; the sub-app sees the runtime (for API key checks)."""
    from fastapi.concurrency import run_in_threadpool
    from stac_fastapi.pgstac.db import connect_to_db

    from geomill.catalog.pgstac import ensure_pgstac

    app.state.runtime = runtime
    await run_in_threadpool(ensure_pgstac, settings.resolved_database_url)
    await connect_to_db(app, postgres_settings=postgres_settings(settings.resolved_database_url, settings.app_name),
                        add_write_connection_pool=False)


async def close_pool(app: FastAPI) -> None:
    from stac_fastapi.pgstac.db import close_db_connection

    if getattr(app.state, "readpool", None) is not None:
        await close_db_connection(app)
