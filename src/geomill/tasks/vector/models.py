"""Parameter and result models of the vector tasks (what travels through the database between stages)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from geomill.domain import InvalidInput
from geomill.tasks.vector.naming import check_identifier as _check_identifier


def check_identifier(value: str, field: str) -> str:
    """naming.check_identifier for validators: pydantic reports a ValueError as a field error (-> InvalidInput)."""
    try:
        return _check_identifier(value, field)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None

IfExists = Literal["fail", "replace", "append"]
GeometryMode = Literal["promote", "split"]
Backend = Literal["postgis", "geopackage"]


class _Aliased(BaseModel):
    """``schema`` is the parameter's name; the attribute is ``schema_`` (BaseModel has a ``schema`` method)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class VectorOptions(_Aliased):
    """What the user asks for; shared by the job's parameters and the prepare task."""

    source: str = Field(min_length=1, description="local path or storage URI of the vector file (a .zip is opened)",
                        json_schema_extra={"x-geomill-file": True})
    table: str | None = Field(None, description="target table; default: the file name made a safe identifier")
    schema_: str = Field("geo", alias="schema", description="target PostgreSQL schema (GeoPackage folder)")
    if_exists: IfExists = Field("fail", description="an existing table: fail, replace it, or append to it")
    layer: str | None = Field(None, description="layer to load (GeoPackage...); '*' loads every layer into "
                              "<table>_<layer>")
    crs: str | None = Field(None, description="CRS of the source when it has none (or a wrong one): assigned, "
                            "not reprojected, e.g. EPSG:2056")
    encoding: str | None = Field(None, description="attribute encoding when the file does not say (.cpg)")
    x_column: str | None = Field(None, description="CSV: column of x / longitude")
    y_column: str | None = Field(None, description="CSV: column of y / latitude")
    wkt_column: str | None = Field(None, description="CSV: column of WKT geometries")
    geometry_mode: GeometryMode = Field("promote", description="mixed types: promote singles to multi (one "
                                        "table), or split into <table>_points, <table>_lines, <table>_polygons")
    chunk_rows: int | None = Field(None, ge=1000, le=10_000_000, description="features per chunk / upload task; "
                                   "default GEOMILL_VECTOR_CHUNK_ROWS (100,000)")

    @field_validator("table")
    @classmethod
    def _safe_table(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value, "table")

    @field_validator("schema_")
    @classmethod
    def _safe_schema(cls, value: str) -> str:
        return check_identifier(value, "schema")


class PrepareVectorParams(VectorOptions):
    pass


class ColumnSpec(BaseModel):
    name: str  # safe SQL identifier in the target
    source: str  # the attribute's name in the source file
    pg_type: str


class ChunkRef(BaseModel):
    index: int
    uri: str  # silver://vector/<key>/<output>/chunk-00000.parquet
    rows: int
    first_fid: int
    size_bytes: int


class LoadTarget(_Aliased):
    """Where one output goes and what it looks like: enough for an upload task to COPY a chunk."""

    key: str
    backend: Backend
    schema_: str = Field(alias="schema")
    table: str
    staging: str  # PostGIS: staging table name; GeoPackage: path of the staging file
    if_exists: IfExists
    geometry_type: str  # POINT, MULTIPOLYGON, GEOMETRY, ... (+Z)
    srid: int
    has_z: bool
    convert: bool = True  # geometries must be promoted to multi or given a Z before loading
    columns: list[ColumnSpec]

    @field_validator("schema_", "table", "staging")
    @classmethod
    def _identifier(cls, value: str, info) -> str:
        if info.field_name == "staging" and "/" in value:
            return value  # a GeoPackage path
        return check_identifier(value, info.field_name.rstrip("_"))


class VectorLoad(BaseModel):
    target: LoadTarget
    source: str
    layer: str | None
    chunks: list[ChunkRef]
    feature_count: int
    bbox: list[float]
    repaired: int
    null_geometries: int
    linearized: int = 0
    source_datetime: str


class PrepareResult(BaseModel):
    loads: list[VectorLoad]
    column_mapping: dict[str, dict[str, str]]  # per layer: source name -> safe name (changed names only)
    skipped_layers: list[str] = []  # layer='*': layers without features, not loaded


class UploadParams(BaseModel):
    target: LoadTarget
    chunk: ChunkRef


class UploadResult(BaseModel):
    table: str
    chunk: int
    rows: int


class FinalizeParams(BaseModel):
    load: VectorLoad
    uploaded_rows: int
    upload_errors: list[str] = []


class FinalizeResult(BaseModel):
    schema_name: str
    table: str
    backend: Backend
    location: str  # schema.table, or the GeoPackage's silver:// URI
    feature_count: int
    geometry_type: str
    srid: int
    bbox: list[float]
    bbox_wgs84: list[float]
    repaired: int
    item_id: str
    linearized: int = 0
    collection_id: str
