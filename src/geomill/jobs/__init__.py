"""Job type declarations, one module per family, and the registry every process builds at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from geomill.domain import RegistryError
from geomill.engine.registry import Registry


def build_registry(plugins: Sequence[str] = ()) -> Registry:
    """All built-in task and job types, plus `plugins` (modules with a ``register(registry)`` function)."""
    from geomill.jobs import demo
    from geomill.tasks import demo as demo_tasks

    registry = Registry()
    demo_tasks.register(registry)
    demo.register(registry)
    _register_raster(registry)
    _register_vector(registry)
    _register_container(registry)
    _register_compute(registry)
    for name in plugins:
        module = importlib.import_module(name)
        if not hasattr(module, "register"):
            raise RegistryError(f"plugin {name!r} has no register(registry) function")
        module.register(registry)
    return registry


def _register_raster(registry: Registry) -> None:
    from geomill.jobs import large_raster, raster_collection
    from geomill.jobs import raster as raster_jobs
    from geomill.tasks import raster, stac

    raster.register(registry)
    stac.register(registry)
    raster_jobs.register(registry)
    raster_collection.register(registry)
    large_raster.register(registry)


def _register_vector(registry: Registry) -> None:
    from geomill.jobs import vector as vector_jobs
    from geomill.tasks import vector

    vector.register(registry)
    vector_jobs.register(registry)


def _register_container(registry: Registry) -> None:
    from geomill.jobs import container as container_jobs
    from geomill.tasks import container

    container.register(registry)
    container_jobs.register(registry)


def _register_compute(registry: Registry) -> None:
    from geomill.jobs import solve as solve_jobs
    from geomill.tasks import solve

    solve.register(registry)
    solve_jobs.register(registry)
