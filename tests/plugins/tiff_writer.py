"""A task type that writes a GeoTIFF where it is told (a full tmpfs in the test): libtiff's own error lines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from pydantic import BaseModel

from geomill.domain import FinishedStage, StageSpec, TaskSpec
from geomill.engine.context import TaskContext
from geomill.engine.registry import JobType, Registry, TaskType
from geomill.engine.retry import RetryPolicy


class WriteParams(BaseModel):
    path: str


class Written(BaseModel):
    path: str


def write_tiff(params: WriteParams, ctx: TaskContext) -> Written:
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 1, "dtype": "uint8", "tiled": True,
               "crs": "EPSG:4326", "transform": Affine(0.001, 0, 0, 0, -0.001, 1)}
    with rasterio.open(params.path, "w", **profile) as ds:
        ds.write(np.random.default_rng(25).integers(0, 255, (1, 512, 512), dtype="uint8"))
    return Written(path=params.path)


def _plan(params: WriteParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [TaskSpec("write", "test.write_tiff", params.model_dump())]


def register(registry: Registry) -> None:
    registry.register_task_type(TaskType("test.write_tiff", write_tiff, WriteParams, Written, "default-tasks",
                                         retry=RetryPolicy(max_attempts=1)))
    registry.register_job_type(JobType("test_write_tiff", "write one GeoTIFF at `path`", WriteParams,
                                       (StageSpec("write", _plan),), lambda p, s: {}))
