"""COG validation that is right for every raster shape.

rio-cogeo's ``cog_validate`` decides "tiled" from the block shape: an image (or overview) wider or taller than 512
whose block is as wide as the image is reported "not tiled". That misreads a tiled image exactly one block wide (a
2048 x 8192 raster's 512 x 2048 overview, the narrow edge tile of a tiled mosaic): GDAL's COG driver wrote it tiled,
and the job failed on a check that was wrong. Tiling is a TIFF tag (TileWidth), so those errors are confirmed
against the file's IFDs (tifffile reads only the headers) and dropped when every large IFD really is tiled.
Likewise its overview "decimation" is the ratio of widths, which is 1 for every overview of a raster one pixel
wide (GDAL halves the height): an overview is judged reduced when it is smaller on either side.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import tifffile
from rio_cogeo.cogeo import cog_validate

SMALL_SIDE = 512  # an IFD no larger than this on both sides may be striped in a valid COG (GDAL's own rule)
_NOT_TILED = "not tiled"
_DECIMATION = "Invalid Decimation"


def _pages(tif: tifffile.TiffFile) -> list[tifffile.TiffPage]:
    """Every IFD as a page with its tags (frames are only made on request, so this is each IFD)."""
    return [p for p in tif.pages if isinstance(p, tifffile.TiffPage)]


def untiled_large_ifds(path: Path | str) -> list[str]:
    """The IFDs (main image, overviews, masks) larger than 512 on a side that are not tiled, as text."""
    found: list[str] = []
    with tifffile.TiffFile(str(path)) as tif:
        for index, page in enumerate(_pages(tif)):
            shape = (page.imagelength, page.imagewidth)
            if max(shape) > SMALL_SIDE and not page.is_tiled:
                found.append(f"IFD {index} ({shape[1]}x{shape[0]}) is stored in strips")
    return found


def overviews_not_reduced(path: Path | str) -> list[str]:
    """The overview IFDs that are not smaller than the image before them on either side, as text."""
    found: list[str] = []
    with tifffile.TiffFile(str(path)) as tif:
        images = [p for p in _pages(tif) if not p.subfiletype & 4]  # masks apart
        shapes = [(p.imagelength, p.imagewidth) for p in images]
    for index, (before, after) in enumerate(itertools.pairwise(shapes)):
        if not (after[0] <= before[0] and after[1] <= before[1] and after != before):
            found.append(f"overview {index} ({after[1]}x{after[0]}) is not smaller than {before[1]}x{before[0]}")
    return found


def validate_cog(path: Path | str) -> tuple[bool, list[str], list[str]]:
    """(valid, errors, warnings) of rio-cogeo's validator, with its "not tiled" and "Invalid Decimation" errors
    checked against the TIFF tags: they stand only when a large IFD really is striped, or an overview really is not
    reduced."""
    _, errors, warnings = cog_validate(str(path), quiet=True)
    for marker, confirm in ((_NOT_TILED, untiled_large_ifds), (_DECIMATION, overviews_not_reduced)):
        # the confirmation reads TIFF headers with tifffile, from local files only: a /vsis3/ or /vsiaz/ COG keeps
        # rio-cogeo's verdict (COGs geomill writes are validated on local disk before they are uploaded)
        if any(marker in e for e in errors) and not str(path).startswith("/vsi") and not confirm(path):
            errors = [e for e in errors if marker not in e]
    return not errors, list(errors), list(warnings)
