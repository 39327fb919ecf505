"""Start-up stays light: the CLI, the registry, job plans and a default-tasks worker import no GDAL, pyogrio,
pyarrow, shapely, pystac or pyproj (each fresh interpreter checks its own sys.modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("rasterio", "osgeo", "pyogrio", "pyarrow", "shapely", "pystac", "pyproj", "pypgstac", "geopandas")

REGISTRY = f"""
import sys
import geomill.cli
from geomill.jobs import build_registry
registry = build_registry()
for task_type in registry.task_types():
    task_type.params_model  # the planner validates task parameters: their models are light too
registry.job_type("process_raster").params_model.model_validate({{"source": "bronze://a.tif"}})
registry.job_type("process_vector").params_model.model_validate({{"source": "bronze://a.shp"}})
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""

WORKER = f"""
import sys, time
from pathlib import Path

import pytest
from geomill.config import Settings
from geomill.runtime import Runtime
from geomill.worker.loop import WorkerLoop
settings = Settings(data_dir=Path(sys.argv[1]), database_url=None, app_name="t", plugins=[],
                    queues=["jobs", "default-tasks"])
rt = Runtime.open(settings)
job_id = rt.orchestrator.submit("hello_world", {{"n": 3}}).job.job_id
loop = WorkerLoop(rt, ["jobs", "default-tasks"])
deadline = time.monotonic() + 60
while not rt.store.get_job(job_id).status.is_terminal:
    assert time.monotonic() < deadline, "hello_world did not finish"
    if not loop.run_once():
        time.sleep(0.01)
print(rt.store.get_job(job_id).status.value)
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
rt.close()
"""


def _run(script: str, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_cli_and_registry_import_no_heavy_library() -> None:
    assert _run(REGISTRY) == [""]


def test_a_default_tasks_worker_runs_hello_world_without_gdal(tmp_path: Path) -> None:
    status, heavy = _run(WORKER, str(tmp_path / "data"))
    assert status == "completed"
    assert heavy == ""


def test_a_handler_reference_is_resolved_on_first_use_and_a_broken_one_is_a_registry_error() -> None:
    from geomill.domain import RegistryError
    from geomill.engine.registry import Registry, TaskType

    lazy = TaskType("t.cog", "geomill.tasks.raster.cog:create_cog", "geomill.tasks.raster.models:CreateCogParams",
                    "geomill.tasks.raster.cog:CogResult", "raster-tasks")
    Registry().register_task_type(lazy)
    assert not lazy.is_resolved("handler")
    assert callable(lazy.handler) and lazy.is_resolved("handler")
    broken = TaskType("t.x", "geomill.tasks.raster.cog:nope", "geomill.tasks.raster.models:CreateCogParams",
                      "geomill.tasks.raster.cog:CogResult", "raster-tasks")
    with pytest.raises(RegistryError, match="cannot resolve"):
        broken.resolve_all()
    with pytest.raises(RegistryError, match="module:name"):
        Registry().register_task_type(TaskType("t.y", "no_colon", "a:B", "a:C", "raster-tasks"))


def test_importing_the_api_loads_no_tiler_nor_stac_server() -> None:
    """titiler, rio-tiler and stac-fastapi load when an app is created (geomill.api.geo.mount), not on import."""
    script = ("import sys, geomill.api, geomill.api.app; "
              "print(','.join(m for m in ('titiler', 'rio_tiler', 'stac_fastapi', 'rasterio', 'asyncpg') "
              "if m in sys.modules))")
    assert _run(script) == [""]
