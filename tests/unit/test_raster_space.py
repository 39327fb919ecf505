"""The up-front room check of COG writing (issue 25): the estimate, and the refusal naming path and numbers."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from geomill.domain import OutOfSpace
from geomill.tasks.raster import space


def raster(width: int, height: int, dtypes: list[str]) -> SimpleNamespace:
    return SimpleNamespace(width=width, height=height, dtypes=dtypes)


def test_the_estimate_counts_bands_dtypes_overviews_and_the_codec() -> None:
    src = raster(1000, 1000, ["uint8", "uint8", "float32"])  # 6 bytes a pixel
    assert space.estimate_cog_bytes(src, "NONE") == 8_000_000  # plus a third for overviews
    assert space.estimate_cog_bytes(src, "DEFLATE") == 4_000_000
    assert space.estimate_cog_bytes(src, "JPEG") == 800_000


def test_less_room_than_the_estimate_is_refused_naming_the_folder_and_both_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(space, "free_bytes", lambda folder: 1_000)
    with pytest.raises(OutOfSpace) as caught:
        space.check_room(tmp_path, 5_000)
    assert (caught.value.path, caught.value.free_bytes, caught.value.needed_bytes) == (str(tmp_path), 1_000, 5_000)
    assert str(tmp_path) in str(caught.value) and "1,000 bytes free" in str(caught.value)
    assert "5,000 bytes needed" in str(caught.value)


def test_enough_room_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(space, "free_bytes", lambda folder: 5_000)
    space.check_room(tmp_path, 5_000)


def test_a_failed_write_is_out_of_space_when_gdal_says_so_or_io_failed_on_a_nearly_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(space, "free_bytes", lambda folder: 10)
    assert space.looks_out_of_space(["_tiffWriteProc: No space left on device."], tmp_path, 1)
    assert space.looks_out_of_space(["TIFFAppendToStrip:Write error at scanline 0"], tmp_path, 100)
    assert not space.looks_out_of_space(["TIFFAppendToStrip:Write error at scanline 0"], tmp_path, 5)
    assert not space.looks_out_of_space(["not a TIFF file"], tmp_path, 100)


def test_gdal_messages_are_collected_without_their_prefix_and_the_logger_is_restored() -> None:
    logger = logging.getLogger(space.GDAL_LOGGER)
    before = (logger.level, logger.propagate, list(logger.handlers))
    with space.gdal_messages() as messages:
        logger.info("GDAL signalled an error: err_no=1, msg='TIFFRewriteDirectory:Error fetching directory count'")
        logger.debug("chatter")
    assert messages == ["TIFFRewriteDirectory:Error fetching directory count"]
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
