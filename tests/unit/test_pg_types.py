"""Arrow attribute types map to the PostgreSQL column types the PostGIS sink creates (class: every Arrow type the
vector reader normalises to, plus one it does not, which becomes text)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from geomill.tasks.vector.chunks import pg_type

CASES = [
    (pa.bool_(), "boolean"), (pa.int8(), "bigint"), (pa.int16(), "smallint"), (pa.int32(), "integer"),
    (pa.int64(), "bigint"), (pa.uint32(), "bigint"), (pa.float32(), "real"), (pa.float64(), "double precision"),
    (pa.date32(), "date"), (pa.timestamp("ms"), "timestamp"), (pa.timestamp("us", tz="+02:00"), "timestamptz"),
    (pa.time64("us"), "time"), (pa.string(), "text"), (pa.binary(), "text"),
]


@pytest.mark.parametrize(("arrow_type", "expected"), CASES, ids=[str(t) for t, _ in CASES])
def test_arrow_types_map_to_postgres_columns(arrow_type: pa.DataType, expected: str) -> None:
    assert pg_type(arrow_type) == expected
