"""The one check that rasters can make one mosaic (CRS, band count, data types, an added alpha band): used by the
collection job's plan (before any COG is written) and by the mosaic task (on the COGs themselves). Light: no GDAL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from geomill.domain import InvalidInput


@dataclass(frozen=True)
class Shape:
    """What must agree for rasters to make one mosaic: CRS (None: reprojected to one), band count, data types."""

    crs: str | None
    count: int
    dtypes: tuple[str, ...]
    alpha_added: bool = False  # reprojected and without nodata: the COG gains an alpha band


def describe(shape: Shape) -> str:
    parts = [f"CRS {shape.crs}"] if shape.crs else []
    dtypes = sorted(set(shape.dtypes))
    parts.append(f"{shape.count} band{'s' if shape.count != 1 else ''} of {'/'.join(dtypes)}")
    if shape.alpha_added:
        parts.append("no nodata value (reprojecting adds an alpha band)")
    return ", ".join(parts)


def differences(shape: Shape, majority: Shape) -> str:
    found = []
    if shape.crs != majority.crs:
        found.append(f"CRS {shape.crs} (the others: {majority.crs})")
    if shape.count != majority.count:
        found.append(f"{shape.count} bands (the others: {majority.count})")
    same_count = shape.count == majority.count
    if shape.dtypes != majority.dtypes and (same_count or set(shape.dtypes) != set(majority.dtypes)):
        found.append(f"data type {'/'.join(shape.dtypes if same_count else sorted(set(shape.dtypes)))} "
                     f"(the others: {'/'.join(majority.dtypes if same_count else sorted(set(majority.dtypes)))})")
    if shape.alpha_added != majority.alpha_added:
        found.append("no nodata value, so reprojecting adds an alpha band (the others: none added)"
                     if shape.alpha_added else "a nodata value, so no alpha band is added (the others: alpha added)")
    return "; ".join(found)


def check_compatible(names: Sequence[str], shapes: Sequence[Shape], *, field: str, what: str,
                     hint: str = "") -> None:
    """InvalidInput naming every raster that differs from the majority (the first seen wins a tie), and how."""
    if not shapes:
        return
    majority = Counter(shapes).most_common(1)[0][0]
    odd = [(name, shape) for name, shape in zip(names, shapes, strict=True) if shape != majority]
    if not odd:
        return
    same = len(shapes) - len(odd)
    details = "; ".join(f"{name!r} has {differences(shape, majority)}" for name, shape in odd)
    raise InvalidInput(
        f"incompatible rasters: {len(odd)} of {len(shapes)} differ from the other {same} "
        f"({describe(majority)}): {details}. {what} must share CRS, band count and data type{hint}",
        field=field,
    )
