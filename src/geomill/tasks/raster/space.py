"""Disk space around raster writes: an up-front room check, GDAL's messages captured, and "disk full" named.

GDAL reports a full disk badly: libtiff prints ``No space left on device`` straight to stderr and GDAL raises a
follow-up error (``TIFFRewriteDirectory:Error fetching directory count``). rasterio logs each GDAL error to the
``rasterio._env`` logger (at INFO), so a handler there collects them for the task's error, and a write that failed
with I/O errors while the folder has less room than the output needs is reported as :class:`OutOfSpace`.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader

from geomill.domain import OutOfSpace

GDAL_LOGGER = "rasterio._env"
MAX_MESSAGES = 12
# share of the raw size a compressed COG is assumed to need at least (lossy codecs shrink far more)
LOSSLESS_RATIO = 0.5
LOSSY_RATIO = 0.1
OVERVIEW_FACTOR = 4 / 3  # the overview pyramid adds about a third
RASTERIO_PREFIX = re.compile(r"^GDAL signalled an error: err_no=\d+, msg='(.*)'$", re.DOTALL)
IO_ERROR_MARKERS = ("no space left", "write error", "seek error", "io error", "error writing", "enospc")


def estimate_cog_bytes(src: DatasetReader, compression: str) -> int:
    """A floor for the COG's size: raw pixels plus overviews, times the share the codec is assumed to keep."""
    raw = src.width * src.height * sum(np.dtype(d).itemsize for d in src.dtypes)
    ratio = 1.0 if compression == "NONE" else LOSSY_RATIO if compression in ("JPEG", "WEBP") else LOSSLESS_RATIO
    return int(raw * OVERVIEW_FACTOR * ratio)


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use in `folder`'s filesystem."""
    return shutil.disk_usage(folder).free


def out_of_space(folder: Path, needed: int, free: int, messages: list[str] | None = None) -> OutOfSpace:
    """The error naming the folder, the room left and the room needed (and GDAL's messages, if any)."""
    text = f"no space left on the device holding {folder}: {free:,} bytes free, about {needed:,} bytes needed"
    if messages:
        text += "; GDAL said: " + " | ".join(messages)
    return OutOfSpace(text, path=str(folder), free_bytes=free, needed_bytes=needed)


def check_room(folder: Path, needed: int) -> None:
    """Refuse before writing when `folder` has less room than `needed` (the write would fill the disk)."""
    free = free_bytes(folder)
    if free < needed:
        raise out_of_space(folder, needed, free)


def looks_out_of_space(messages: list[str], folder: Path, needed: int) -> bool:
    """True when GDAL said so, or reported I/O errors while the folder has less room than the output needs."""
    text = " ".join(messages).lower()
    if "no space left" in text or "disk full" in text:
        return True
    return any(m in text for m in IO_ERROR_MARKERS) and free_bytes(folder) < needed


class _Collect(logging.Handler):
    """Keeps GDAL's messages and passes those the logger would have let through on to its parent, as before."""

    def __init__(self, into: list[str], forward_from: int, parent: logging.Logger | None) -> None:
        super().__init__(logging.DEBUG)
        self.into, self.forward_from, self.parent = into, forward_from, parent

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO:
            msg = RASTERIO_PREFIX.sub(r"\1", record.getMessage())
            if msg not in self.into and len(self.into) < MAX_MESSAGES:
                self.into.append(msg)
        if record.levelno >= self.forward_from and self.parent is not None:
            self.parent.handle(record)


@contextmanager
def gdal_messages() -> Iterator[list[str]]:
    """Collect GDAL's error and warning messages (rasterio logs them at INFO) while the block runs, without
    letting the INFO ones reach the application's log."""
    messages: list[str] = []
    logger = logging.getLogger(GDAL_LOGGER)
    saved = (logger.level, logger.propagate)
    handler = _Collect(messages, logger.getEffectiveLevel(), logger.parent if logger.propagate else None)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
