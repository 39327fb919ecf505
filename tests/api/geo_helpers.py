"""Helpers of the tile and STAC API tests: a real HTTP server on a free port (pystac-client needs one), the tile
that holds a point, and decoding a PNG tile with rasterio."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import morecantile
import numpy as np
import rasterio
import uvicorn
from rasterio.io import MemoryFile
from rasterio.warp import transform as warp_points

from api_helpers import free_port

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a free loopback port: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def decode_png(data: bytes) -> np.ndarray:
    """The bands of a PNG tile (the last one is the alpha mask titiler adds)."""
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read()


def tile_over(path: str, zoom: int) -> tuple[morecantile.Tile, np.ndarray]:
    """The WebMercatorQuad tile at `zoom` over the centre of the raster at `path`, and the raster's values at the
    centre of that tile's pixel (128, 128) (the source read where the tile's middle pixel lies)."""
    with rasterio.open(path) as ds:
        cx, cy = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
        [lon], [lat] = warp_points(ds.crs, "EPSG:4326", [cx], [cy])
        tile = WEB_MERCATOR.tile(lon, lat, zoom)
        b = WEB_MERCATOR.xy_bounds(tile)
        size = (b.right - b.left) / 256
        px, py = b.left + 128.5 * size, b.top - 128.5 * size
        [sx], [sy] = warp_points("EPSG:3857", ds.crs, [px], [py])
        values = next(ds.sample([(sx, sy)]))
    return tile, values
