"""Shared by the vector tests: sample files, generated sources, and running process_vector in-process."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyogrio
import shapely

import samples
from geomill.config import Settings
from geomill.domain import Job
from geomill.runtime import Runtime
from jobrun import run_until_finished

SAMPLES = {"coutwildrnp.shp": 67, "grenada.geojson": 1, "rmnp.geojson": 1}


def copy_samples(bronze: Path) -> None:
    """The sample vectors (tests/data/vector), copied into the test's bronze zone (never read in place)."""
    for f in samples.data("vector").iterdir():
        shutil.copy(f, bronze / f.name)


def open_runtime(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Runtime:
    """A real runtime (store, registry with every job type) on SQLite or PostgreSQL, run by an in-process loop."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "database_url": database_url, "app_name": "vector-test", "workers": 1,
        "queues": ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"],
        "lease_seconds": 60.0, "poll_interval_seconds": 0.05, "stall_grace_seconds": 0.0, "plugins": [],
    }
    return Runtime.open(Settings(**{**values, **overrides}))


def run_vector_job(rt: Runtime, timeout: float = 120.0, **params: Any) -> Job:
    """Submit process_vector and run an in-process worker loop until the job is terminal."""
    return run_until_finished(rt, rt.orchestrator.submit("process_vector", params).job.job_id, timeout)


def write_points_gpkg(path: Path, n: int, seed: int = 7, batch: int = 250_000) -> tuple[float, float, str]:
    """`n` random points (EPSG:4326) with two attributes, written in batches; returns (sum of x, sum of y, md5 of
    the points' WKB in id order)."""
    rng = np.random.default_rng(seed)
    sx = sy = 0.0
    digest = hashlib.md5()
    for start in range(0, n, batch):
        k = min(batch, n - start)
        xs, ys = rng.uniform(-180, 180, k).round(6), rng.uniform(-85, 85, k).round(6)
        sx, sy = sx + float(xs.sum()), sy + float(ys.sum())
        wkb = shapely.to_wkb(shapely.points(xs, ys), byte_order=1)
        digest.update(b"".join(wkb))
        table = pa.table({"id": pa.array(np.arange(start, start + k)), "v": pa.array(xs * ys),
                          "geom": pa.array(wkb, type=pa.binary())})
        pyogrio.write_arrow(table, str(path), layer="points", driver="GPKG", geometry_name="geom",
                            geometry_type="Point", crs="EPSG:4326", append=start > 0, SPATIAL_INDEX="NO")
    return sx, sy, digest.hexdigest()


def write_geojson(path: Path, features: list[dict[str, Any]], crs: str | None = None) -> Path:
    import json

    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def feature(geometry: str, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": props, "geometry": shapely.geometry.mapping(shapely.from_wkt(geometry))}
