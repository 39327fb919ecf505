"""Geometry work on whole Arrow batches with shapely's vectorized functions: repair, type bookkeeping, promotion.

shapely type ids: 0 Point, 1 LineString, 2 LinearRing, 3 Polygon, 4 MultiPoint, 5 MultiLineString,
6 MultiPolygon, 7 GeometryCollection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import shapely

FAMILY_OF_TYPE = {0: "point", 4: "point", 1: "line", 2: "line", 5: "line", 3: "polygon", 6: "polygon",
                  7: "collection"}
SINGLE_TYPES = {"point": {0}, "line": {1, 2}, "polygon": {3}}
SINGLE_NAME = {"point": "POINT", "line": "LINESTRING", "polygon": "POLYGON", "collection": "GEOMETRYCOLLECTION"}
MULTI_NAME = {"point": "MULTIPOINT", "line": "MULTILINESTRING", "polygon": "MULTIPOLYGON",
              "collection": "GEOMETRYCOLLECTION"}
MULTI_MAKER: dict[str, Callable[..., np.ndarray]] = {"point": shapely.multipoints, "line": shapely.multilinestrings, "polygon": shapely.multipolygons}


@dataclass
class GeometryStats:
    """What was seen of one output's geometries: type ids, Z, bounds, repairs, nulls."""

    rows: int = 0
    type_ids: set[int] = field(default_factory=set)
    has_z: bool = False
    bounds: list[float] | None = None  # xmin, ymin, xmax, ymax in the layer's CRS
    repaired: int = 0
    linearized: int = 0  # curved geometries made linear on read
    nulls: int = 0
    has_2d: bool = False

    def add(self, geoms: np.ndarray, repaired: int) -> None:
        self.rows += len(geoms)
        self.repaired += repaired
        present = geoms[~shapely.is_missing(geoms)]
        self.nulls += len(geoms) - len(present)
        if not len(present):
            return
        self.type_ids.update(int(t) for t in np.unique(shapely.get_type_id(present)))
        z = shapely.has_z(present)
        self.has_z = self.has_z or bool(z.any())
        self.has_2d = self.has_2d or bool((~z).any())
        box = shapely.total_bounds(present)
        if not np.isnan(box).any():
            self.bounds = box.tolist() if self.bounds is None else [
                min(self.bounds[0], box[0]), min(self.bounds[1], box[1]),
                max(self.bounds[2], box[2]), max(self.bounds[3], box[3])]

    def families(self) -> set[str]:
        return {FAMILY_OF_TYPE[t] for t in self.type_ids}


def target_type(stats: GeometryStats) -> str:
    """The PostGIS/GeoPackage geometry type for what was seen: one family stays single unless multis appear
    (then all are promoted to multi); several families, or none, give the generic GEOMETRY."""
    families = stats.families()
    if len(families) != 1:
        base = "GEOMETRY"
    else:
        family = families.pop()
        singles_only = stats.type_ids <= SINGLE_TYPES.get(family, set())
        base = SINGLE_NAME[family] if singles_only else MULTI_NAME[family]
    return base + ("Z" if stats.has_z else "")


def needs_conversion(stats: GeometryStats) -> bool:
    """True when some rows must change to fit the target type: singles promoted to multi, 2D given a Z."""
    family = next(iter(stats.families()), None) if len(stats.families()) == 1 else None
    promoted = family is not None and target_type(stats).rstrip("Z").startswith("MULTI") and bool(
        stats.type_ids & SINGLE_TYPES.get(family, set()))
    return promoted or (stats.has_z and stats.has_2d)


def drop_m(geoms: np.ndarray) -> tuple[np.ndarray, int]:
    """M values removed (XYM -> XY, XYZM -> XYZ): the outputs have no M dimension. Returns (geoms, changed)."""
    measured = shapely.has_m(geoms)
    count = int(measured.sum())
    if count:
        geoms = geoms.copy()
        with_z = measured & shapely.has_z(geoms)
        geoms[with_z] = shapely.from_wkb(shapely.to_wkb(geoms[with_z], output_dimension=3, flavor="iso"))
        geoms[measured & ~with_z] = shapely.force_2d(geoms[measured & ~with_z])
    return geoms, count


def z_empties(wkb: np.ndarray, geoms: np.ndarray) -> np.ndarray:
    """Empty multi geometries and collections given a Z type code in their ISO WKB (GEOS cannot make them Z, and
    a PostGIS Z column refuses a 2D empty geometry)."""
    flat = shapely.is_empty(geoms) & ~shapely.has_z(geoms)
    if flat.any():
        wkb = wkb.copy()
        for i in np.flatnonzero(flat):
            code = int.from_bytes(wkb[i][1:5], "little") % 1000
            wkb[i] = b"\x01" + (code + 1000).to_bytes(4, "little") + wkb[i][5:]
    return wkb


def repair(geoms: np.ndarray) -> tuple[np.ndarray, int]:
    """Invalid geometries made valid (``make_valid``, keeping each one's dimension); returns (geoms, repaired)."""
    invalid = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms)
    count = int(invalid.sum())
    if count:
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
    return geoms, count


def family_masks(geoms: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks by geometry family (rows without a geometry go with the first family present, else 'point')."""
    ids = shapely.get_type_id(geoms)
    masks = {fam: np.isin(ids, [t for t, f in FAMILY_OF_TYPE.items() if f == fam]) for fam in
             ("point", "line", "polygon", "collection")}
    missing = ids < 0
    if missing.any():
        first = next((f for f, m in masks.items() if m.any()), "point")
        masks[first] = masks[first] | missing
    return {f: m for f, m in masks.items() if m.any()}


def promote(geoms: np.ndarray, geometry_type: str) -> np.ndarray:
    """Single geometries wrapped into their multi type when the target type is a MULTI one."""
    base = geometry_type.rstrip("Z")
    family = next((f for f, name in MULTI_NAME.items() if name == base and f in MULTI_MAKER), None)
    if family is None:
        return geoms
    singles = np.isin(shapely.get_type_id(geoms), list(SINGLE_TYPES[family]))
    if singles.any():
        geoms = geoms.copy()
        geoms[singles] = MULTI_MAKER[family](geoms[singles], indices=np.arange(int(singles.sum())))
    return geoms


def to_wkb_column(geoms: np.ndarray, has_z: bool = True) -> pa.Array:
    """ISO WKB, as GeoParquet and GeoPackage writers expect."""
    return pa.array(shapely.to_wkb(geoms, output_dimension=3 if has_z else 2, flavor="iso"), type=pa.binary())
