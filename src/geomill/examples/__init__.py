"""Packaged sample data for `geomill demo`."""

from importlib import resources
from pathlib import Path

DEMO_RASTERS = ("RGB.byte.tif", "shade.tif")


def demo_raster_paths() -> list[Path]:
    folder = resources.files(__name__).joinpath("data")
    return [Path(str(folder.joinpath(name))) for name in DEMO_RASTERS]
