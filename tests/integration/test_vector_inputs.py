"""Real-world vector inputs (issue 19): curved geometries linearized (counted), TIN / PolyhedralSurface refused at
once, File Geodatabases, awkward file names, `layer='*'` with empty layers. End to end in embedded mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyogrio
import pytest

from geomill.domain import JobStatus
from vector_helpers import open_runtime, run_vector_job

CURVES = ["CIRCULARSTRING (0 0, 1 1, 2 0)", "COMPOUNDCURVE (CIRCULARSTRING (0 0, 1 1, 2 0), (2 0, 3 0))",
          "CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0))",
          "MULTICURVE ((0 0, 1 1), CIRCULARSTRING (0 0, 1 1, 2 0))",
          "MULTISURFACE (CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0)))"]


@pytest.fixture
def rt(tmp_path: Path):
    runtime = open_runtime(tmp_path / "data")
    yield runtime
    runtime.close()


def bronze(rt) -> Path:
    return rt.storage.zone_path("bronze")


def gdal_wkb(tmp: Path, wkts: list[str]) -> np.ndarray:
    """ISO WKB of any WKT GDAL knows (curves and TINs too, which shapely cannot build), via GDAL's CSV reader."""
    csv = tmp / "wkt.csv"
    csv.write_text("id,WKT\n" + "".join(f'{i},"{w}"\n' for i, w in enumerate(wkts)))
    with pyogrio.open_arrow(csv, use_pyarrow=True) as (_, reader):
        return np.array([bytes(v.as_py()) for v in reader.read_all().column("wkb_geometry")], dtype=object)


def write_wkb_gpkg(path: Path, wkb: np.ndarray, layer: str = "shapes") -> None:
    table = pa.table({"n": pa.array(np.arange(len(wkb))), "geom": pa.array(list(wkb), type=pa.binary())})
    pyogrio.write_arrow(table, path, layer=layer, driver="GPKG", geometry_name="geom", geometry_type="Unknown",
                        crs="EPSG:2056", append=path.exists())


def test_curved_geometries_in_a_geopackage_are_linearized_and_counted(rt, tmp_path: Path) -> None:
    write_wkb_gpkg(bronze(rt) / "curves.gpkg", gdal_wkb(tmp_path, [*CURVES, "POINT (5 5)"]))
    job = run_vector_job(rt, source="bronze://curves.gpkg")
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["linearized"] == len(CURVES) and job.result["tables"][0]["linearized"] == len(CURVES)
    out = pyogrio.read_dataframe(rt.storage.local_path(job.result["tables"][0]["location"]))
    assert len(out) == len(CURVES) + 1
    arc = out.geometry.iloc[0]
    assert arc.geom_type == "LineString" and len(arc.coords) > 10  # GDAL's default: a vertex every 4 degrees
    assert max(y for _, y in arc.coords) == pytest.approx(1.0, abs=1e-3)  # chord error of 4-degree steps on r=1
    disc = out.geometry.iloc[2]
    assert disc.geom_type in ("Polygon", "MultiPolygon") and disc.area == pytest.approx(np.pi, rel=0.01)


@pytest.mark.parametrize("wkt", ["TIN Z (((0 0 0, 0 1 0, 1 0 0, 0 0 0)))",
                                 "POLYHEDRALSURFACE Z (((0 0 0, 0 1 0, 1 1 0, 0 0 0)))"])
def test_tin_and_polyhedral_surface_are_refused_at_once_naming_the_file(rt, tmp_path: Path, wkt: str) -> None:
    write_wkb_gpkg(bronze(rt) / "mesh.gpkg", gdal_wkb(tmp_path, [wkt]))
    job = run_vector_job(rt, source="bronze://mesh.gpkg")
    assert job.status is JobStatus.FAILED
    message = job.error["message"]
    assert "InvalidInput" in message and "mesh.gpkg" in message and wkt.split()[0].replace("POLYHEDRALSURFACE",
                                                                                          "PolyhedralSurface") in message
    attempts = [t.attempt for t in rt.store.list_tasks(job.job_id)]
    assert max(attempts) == 1  # an input error is never retried
