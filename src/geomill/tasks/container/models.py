"""The container tasks' parameter and result models: light (no GDAL), for plans and the planner."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from geomill.tasks.container.kinds import normalize_extensions
from geomill.tasks.stac.models import DEFAULT_COLLECTION

DEFAULT_PART_SIZE = 10_000  # objects per manifest part: what one diff task holds in memory
MANIFESTS = "container-manifests"  # silver://container-manifests/<job id>/: manifests and change lists


class ContainerFilter(BaseModel):
    """Which objects under `source` count: a glob on the key relative to it, and/or extensions."""

    source: str = Field(min_length=1, description="a container, prefix or folder: s3://bucket/prefix/, "
                                                  "az://container/prefix/, bronze://prefix/ or a local folder",
                        json_schema_extra={"x-geomill-file": True, "x-geomill-prefix": True})
    pattern: str | None = Field(None, min_length=1, description="fnmatch glob on the key relative to source, e.g. "
                                                                "'2024/*.tif' ('*' also matches '/')")
    extensions: list[str] | None = Field(None, min_length=1, description="keep only these extensions, e.g. "
                                                                         "['tif', 'jp2']")

    sniff: bool = Field(False, description="files whose extension says nothing: read their first bytes (one range "
                                           "request each) and tell rasters, vectors and archives by their magic "
                                           "bytes")

    @field_validator("extensions")
    @classmethod
    def _normal_extensions(cls, value: list[str] | None) -> list[str] | None:
        return normalize_extensions(value)


class ListContainerParams(ContainerFilter):
    part_size: int = Field(DEFAULT_PART_SIZE, ge=1, le=1_000_000, description="objects per manifest part")


class ManifestPart(BaseModel):
    uri: str
    count: int
    bytes: int
    first_key: str
    last_key: str


class Manifest(BaseModel):
    """A container's inventory: JSON lines parts in silver, in key order (one object per line: key, uri, size,
    etag, mtime, kind)."""

    source: str
    object_uri: str  # what `source` resolved to (s3://…, az://…, a local folder)
    manifest_uri: str  # the folder of the parts
    parts: list[ManifestPart]
    objects: int
    bytes: int
    kinds: dict[str, int]


class DiffPartParams(BaseModel):
    scope: str = Field(min_length=1)
    collection_id: str = DEFAULT_COLLECTION
    part: int = Field(ge=0)
    part_uri: str | None = Field(None, description="the manifest part; None: an empty container")
    after: str | None = Field(None, description="keys above this one (None: from the first)")
    upto: str | None = Field(None, description="keys up to and including this one (None: to the last)")
    remove_deleted: bool = False
    vectors: bool = Field(False, description="vector files (and .zip archives) are processed too: loaded")


class ChangeList(BaseModel):
    uri: str
    count: int


class DiffResult(BaseModel):
    part: int
    objects: int  # listed in the part
    geospatial: int  # of which rasters (and vector files when loaded): what a sync processes
    rasters: int = 0  # new or changed rasters (a mosaic is refreshed when any)
    new: int
    changed: int
    unchanged: int
    changes: list[ChangeList]  # JSON lines of the new and changed objects, at most CHANGES_PER_FILE each
    deleted: int
    deleted_uris: list[str]  # the first DELETED_SHOWN
    removed: int  # items removed (remove_deleted)


class SyncFileParams(BaseModel):
    changes_uri: str = Field(min_length=1)
    index: int = Field(ge=0, description="the line of changes_uri naming the object")
    scope: str = Field(min_length=1)
    collection_id: str = DEFAULT_COLLECTION
    target_crs: str | None = None
    compression: str | None = None
    resampling: str | None = None
    vector_schema: str | None = Field(None, description="load vector files into this schema (None: not loaded)")


class SyncFileResult(BaseModel):
    key: str
    uri: str
    version: str
    action: str  # "catalog" (a COG, catalogued in place), "cog" (a COG written, then catalogued), "load" (vector)
    item_id: str  # a vector load: the first table's STAC item (collection geomill-vectors)
    cog_uri: str | None
    href: str  # a vector load: the first table's location
    tables: list[str] = []  # a vector load: schema.table (or GeoPackage URI) of each table loaded
    rows: int = 0  # a vector load: features loaded


class ContainerMosaicParams(BaseModel):
    scope: str = Field(min_length=1)
    collection_id: str = DEFAULT_COLLECTION


class ContainerMosaicResult(BaseModel):
    """The collection's mosaic, or why there is none (`skipped`)."""

    rasters: int  # rasters the ledger lists for the scope
    skipped: str | None = None
    mosaicjson_uri: str | None = None
    vrt_uri: str | None = None
    bounds: list[float] | None = None
    crs: str | None = None


class CatalogFileParams(BaseModel):
    source: str = Field(min_length=1, description="a raster (a COG, ideally) to catalog where it is",
                        json_schema_extra={"x-geomill-file": True})
    collection_id: str = DEFAULT_COLLECTION
    item_id: str | None = Field(None, description="default: the file name without extension")


class CatalogFileResult(BaseModel):
    source: str
    item_id: str
    collection_id: str
    href: str
    is_cog: bool
    bbox: list[float]
    datetime: str
    item_path: str
    catalog_backend: str
