"""Where the tests find sample data: the project's own copies, then the shared sample set (``shared/data``, with
its provenance) that sits beside the checkout.

The shared set is looked up in ``GEOMILL_SAMPLE_DATA`` when set, else in ``shared/data`` next to the checkout or
next to any folder above it (a clone in ``/work/ci`` and one in ``/work/ci/nested/x`` both find ``/work/shared``).
A sample that cannot be found skips its test locally and FAILS it when ``CI`` is set, as a missing service does: a
green CI run that skipped the raster tests would prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from services import unavailable

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "src" / "geomill" / "examples" / "data"  # RGB.byte.tif and shade.tif ship with the package


def _find_shared() -> Path | None:
    given = os.environ.get("GEOMILL_SAMPLE_DATA")
    if given:
        return Path(given).expanduser().resolve()
    for folder in REPO.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return None


SHARED = _find_shared()


def shared(*parts: str) -> Path:
    """A file or folder of the shared sample set (``shared("raster", "float.tif")``); skip/fail when missing."""
    if SHARED is None:
        unavailable("the shared sample data (shared/data beside the checkout, or GEOMILL_SAMPLE_DATA) was not found")
    path = SHARED.joinpath(*parts)
    if not path.exists():
        unavailable(f"sample {path} not found")
    return path


def raster(name: str) -> Path:
    """A sample raster: the package's copy when it has one, else the shared set's."""
    if (EXAMPLES / name).is_file():
        return EXAMPLES / name
    return shared("raster", name)
