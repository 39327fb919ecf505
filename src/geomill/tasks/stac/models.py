"""The STAC tasks' parameter models: light (no GDAL, no pystac), for plans and the planner."""

from __future__ import annotations

from pydantic import BaseModel, Field

DEFAULT_COLLECTION = "geomill-rasters"


class CreateItemParams(BaseModel):
    cog_uri: str = Field(min_length=1, description="the COG to describe (storage URI or path)")
    source: str = Field(min_length=1, description="the raster the COG was made from (gives the datetime)")
    item_id: str | None = Field(None, description="default: the COG's file name without extension")
    collection_id: str = DEFAULT_COLLECTION


class CollectionItemSpec(BaseModel):
    cog_uri: str = Field(min_length=1, description="the COG the item describes")
    source: str = Field(min_length=1, description="the raster the COG was made from (gives the datetime)")
    item_id: str | None = Field(None, description="default: the COG's file name without extension")


class MosaicRef(BaseModel):
    """The part of a ``raster.mosaic`` result the collection links to (other fields are ignored)."""

    mosaicjson_uri: str
    vrt_uri: str


class CreateCollectionParams(BaseModel):
    collection_id: str = Field(min_length=1)
    title: str | None = None
    description: str | None = None
    items: list[CollectionItemSpec] = Field(min_length=1)
    mosaic: MosaicRef | None = None
