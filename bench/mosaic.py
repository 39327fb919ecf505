#!/usr/bin/env python
"""Benchmark: how ``raster.mosaic`` and ``stac.create_collection`` scale with the number of COGs.

    .venv/bin/python bench/mosaic.py            # 100, 500 and 2,000 tiles into BENCHMARKS.md
    .venv/bin/python bench/mosaic.py --quick    # 100 and 500 tiles, one round, no BENCHMARKS.md update

The tiles are small 256x256 uint16 COGs on one grid (what ``process_large_raster`` hands the mosaic stage, only
smaller, since the cost is per COG, not per pixel). Each handler runs in a fresh spawned process, so its peak RSS
(``ru_maxrss``) is its own; the static catalog (SQLite mode) receives the collection. raster.mosaic: median of 3
runs; stac.create_collection: one run (it takes minutes at 2,000 COGs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from common import update_section  # bench/ is on sys.path when a script runs

SECTION = "## Mosaic and STAC collection scaling (bench/mosaic.py)"
TILE = 256


def make_tiles(root: Path, count: int) -> list[str]:
    """`count` COG tiles in silver://cogs on a square-ish grid; returns their URIs."""
    folder = root / "silver" / "cogs"
    folder.mkdir(parents=True, exist_ok=True)
    side = int(np.ceil(np.sqrt(count)))
    data = np.random.default_rng(1).integers(1, 65535, size=(1, TILE, TILE), dtype=np.uint16)
    uris = []
    for i in range(count):
        row, col = divmod(i, side)
        transform = Affine(10, 0, 300000 + col * TILE * 10, 0, -10, 4600000 - row * TILE * 10)
        name = f"tile_{row:04d}_{col:04d}.tif"
        with rasterio.open(folder / name, "w", driver="COG", width=TILE, height=TILE, count=1, dtype="uint16",
                           crs="EPSG:32618", transform=transform, nodata=0) as dst:
            dst.write(data)
        uris.append(f"silver://cogs/{name}")
    return uris


def _run(args: tuple[str, str, list[str]]) -> tuple[float, int]:
    """In a fresh process: run one handler, return (seconds, peak RSS in KiB)."""
    which, root, uris = args
    from geomill.catalog.base import open_catalog
    from geomill.engine.context import TaskContext
    from geomill.storage.local import LocalStorage
    from geomill.tasks.raster.mosaic import MosaicParams, _mosaicjson_class, create_mosaic
    from geomill.tasks.stac.collection import CreateCollectionParams, create_collection

    _mosaicjson_class()  # imports (cogeo-mosaic, rio-tiler) are not part of the measure
    storage = LocalStorage(Path(root))
    ctx = TaskContext(task_id="bench", job_id="bench", stage=1, attempt=1, storage=storage,
                      catalog=open_catalog(storage))
    start = time.perf_counter()
    if which == "mosaic":
        create_mosaic(MosaicParams(cogs=uris, name="bench"), ctx)
    else:
        items = [{"cog_uri": u, "source": u} for u in uris]
        mosaic = {"mosaicjson_uri": "silver://mosaics/bench.json", "vrt_uri": "silver://mosaics/bench.vrt"}
        create_collection(CreateCollectionParams(collection_id="bench", items=items, mosaic=mosaic), ctx)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(which: str, root: Path, uris: list[str]) -> tuple[float, int]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run, ((which, str(root), uris),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    counts, rounds = ((100, 500), {"mosaic": 1, "collection": 1}) if args.quick else (
        (100, 500, 2000), {"mosaic": 3, "collection": 1})
    rows = []
    load_start = os.getloadavg()[0]
    for count in counts:
        root = Path(tempfile.mkdtemp(prefix="geomill-bench-mosaic-"))
        try:
            uris = make_tiles(root, count)
            for which in ("mosaic", "collection"):
                runs = [measure(which, root, uris) for _ in range(rounds[which])]
                seconds = statistics.median(r[0] for r in runs)
                rss_mb = max(r[1] for r in runs) / 1024
                rows.append((which, count, seconds, seconds / count * 1000, rss_mb))
                print(f"{which:>10} {count:>6} COGs: {seconds:7.2f} s ({seconds / count * 1000:5.2f} ms/COG), "
                      f"peak RSS {rss_mb:6.0f} MB", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    load_end = os.getloadavg()[0]
    print(f"load average (1 min) at start / end: {load_start:.1f} / {load_end:.1f}")
    if args.quick:
        return
    table = ["| task | COGs | wall (median) | per COG | peak RSS |", "|---|---:|---:|---:|---:|"]
    table += [f"| {'raster.mosaic' if w == 'mosaic' else 'stac.create_collection'} | {n:,} | {s:.2f} s | "
              f"{per:.2f} ms | {rss:.0f} MB |" for w, n, s, per, rss in rows]
    section = "\n".join([
        SECTION, "",
        f"{platform.node()}, {multiprocessing.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"GDAL {rasterio.__gdal_version__}; {TILE}x{TILE} uint16 COG tiles; raster.mosaic: median of "
        f"{rounds['mosaic']} runs, stac.create_collection: {rounds['collection']} run; each handler in a fresh "
        "process (peak RSS = that process). Command: `.venv/bin/python bench/mosaic.py`.",
        "", *table, "",
        "raster.mosaic opens each COG once (metadata only), writes the VRT, then builds the MosaicJSON; "
        "stac.create_collection runs rio-stac on each COG, validates every item offline and upserts them into the "
        "static catalog in one locked write.", "",
        f"Machine load (1-minute load average) at start / end: {load_start:.1f} / {load_end:.1f} on "
        f"{multiprocessing.cpu_count()} CPUs; above the CPU count, other sessions' work shared the CPUs and the "
        "times are inflated accordingly (peak RSS is not affected).", "",
    ])
    update_section(SECTION, section)


if __name__ == "__main__":
    main()
