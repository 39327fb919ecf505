"""Names: target identifiers checked strictly, source attribute names made safe, coordinate columns detected.

Pure functions (no I/O), so they are unit-tested on their own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from geomill.domain import InvalidInput
from geomill.sinks import CHUNK_COLUMN, FID_COLUMN, GEOMETRY_COLUMN  # the sinks own the table layout

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RESERVED = frozenset({GEOMETRY_COLUMN, FID_COLUMN, CHUNK_COLUMN})
# SQL reserved words that would need quoting in hand-written queries: renamed so users never have to quote
SQL_RESERVED = frozenset("""
all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create
current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc
distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral
leading limit localtime localtimestamp not null offset on only or order placing primary references returning
select session_user some symmetric table then to trailing true union unique user using variadic when where window
with authorization binary collation concurrently cross freeze full ilike inner is isnull join left like natural
notnull outer overlaps right similar tablesample verbose
""".split())

_NO_DECOMPOSITION = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
                                   "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH"})
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "xcoord", "x_coord", "easting", "point_x")
LAT_NAMES = ("lat", "latitude", "y", "ycoord", "y_coord", "northing", "point_y")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "wkt_geom", "geometry_wkt", "shape")


def check_identifier(value: str, field: str) -> str:
    """A target schema or table name: lower-case letters, digits and '_', at most 63 bytes; anything else refused."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise InvalidInput(
            f"{field} {value!r} is not a safe SQL identifier: use 1-63 lower-case letters, digits or '_', "
            "starting with a letter or '_'", field=field)
    if value in SQL_RESERVED or value.startswith("pg_"):
        raise InvalidInput(f"{field} {value!r} is a reserved SQL word or system prefix; choose another name",
                           field=field)
    return value


def safe_name(name: str) -> str:
    """`name` as a plain SQL identifier: ASCII, lower case, [a-z0-9_], not starting with a digit, <= 63 chars."""
    spelled = name.translate(_NO_DECOMPOSITION)
    ascii_name = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^a-z0-9_]+", "_", ascii_name.lower()).strip("_")
    cleaned = re.sub(r"_+", "_", cleaned) or "field"
    if cleaned[0].isdigit():
        cleaned = f"f_{cleaned}"
    if cleaned in SQL_RESERVED or cleaned in RESERVED or cleaned.startswith("pg_"):
        cleaned = f"{cleaned}_"
    return cleaned[:63]


def safe_columns(names: Sequence[str]) -> dict[str, str]:
    """Source attribute name -> unique safe SQL identifier, in source order (collisions get _2, _3...)."""
    mapping: dict[str, str] = {}
    taken: set[str] = set(RESERVED)
    for name in names:
        base = safe_name(name)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            suffix = f"_{n}"
            candidate = base[: 63 - len(suffix)] + suffix
        taken.add(candidate)
        mapping[name] = candidate
    return mapping


def table_name_from(source_stem: str) -> str:
    """A default table name from a file name."""
    name = safe_name(source_stem)
    return name if IDENTIFIER.match(name) else f"t_{name}"[:63]


def _find(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    lowered = {n.lower().strip(): n for n in names}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return None


def detect_xy_columns(names: Sequence[str]) -> tuple[str, str] | None:
    """(x, y) column names from common spellings (lon/lat, longitude/latitude, x/y, easting/northing), or None."""
    x, y = _find(names, LON_NAMES), _find(names, LAT_NAMES)
    return (x, y) if x and y else None


def detect_wkt_column(names: Sequence[str]) -> str | None:
    """A column that commonly holds WKT geometries (wkt, geometry, geom, the_geom...), or None."""
    return _find(names, WKT_NAMES)


def is_lonlat(x: str, y: str) -> bool:
    """True when the column names say the coordinates are longitude/latitude (then EPSG:4326 is assumed)."""
    return x.lower() in ("lon", "lng", "long", "longitude") and y.lower() in ("lat", "latitude")
