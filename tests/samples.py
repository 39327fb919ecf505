"""Where the tests find sample data: files this repository ships, never anything outside the checkout.

``tests/data`` holds the small real samples the tests need (provenance and licence in ``tests/data/README.md``);
``src/geomill/examples/data`` holds the two demo rasters the package ships. A missing file is a broken checkout,
not a missing service, so it fails the test everywhere instead of skipping it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"  # small real samples, copied with their provenance (tests/data/README.md)
EXAMPLES = REPO / "src" / "geomill" / "examples" / "data"  # RGB.byte.tif and shade.tif ship with the package


def data(*parts: str) -> Path:
    """A file or folder of the repository's test data (``data("vector", "grenada.geojson")``); fails when missing."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"sample {path} is missing from the checkout (tests/data is part of the repository)")
    return path



def raster(name: str) -> Path:
    """A sample raster: the package's copy when it has one, else the test data's."""
    if (EXAMPLES / name).is_file():
        return EXAMPLES / name
    return data("raster", name)
