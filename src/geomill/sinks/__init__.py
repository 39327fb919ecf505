"""Vector sinks: where a vector load lands, PostGIS (on PostgreSQL) or GeoPackage files in silver (embedded).

A sink owns its storage's layout and every statement it runs (DDL, COPY, the swap into place); handlers call it
through ``geomill.engine.context.VectorSink`` and never see a connection or a URL.
"""

from __future__ import annotations

GEOMETRY_COLUMN = "geom"
FID_COLUMN = "fid"
CHUNK_COLUMN = "_geomill_chunk"  # staging only: lets a re-run of one chunk replace its own rows
