"""How cloud credentials and zone bases are read: AWS_* and AZURE_STORAGE_* into obstore and GDAL settings, zone
URIs onto their bases, public hrefs, and no credential in the storage's repr (no network: nothing is contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geomill.storage import ObjectStorage, StorageError
from geomill.storage.objects import azure_settings, gdal_options, s3_settings

KEY = "c2VjcmV0LWtleQ=="
CONN = f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:10000/acct;"


def test_s3_environment_maps_to_gdal_options_for_a_custom_http_endpoint() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "sk",
           "AWS_REGION": "eu-west-1"}
    assert s3_settings(env) == {"endpoint": "http://127.0.0.1:5000", "access_key_id": "id",
                                "secret_access_key": "sk", "region": "eu-west-1"}
    options = gdal_options(env)
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:5000"
    assert options["AWS_HTTPS"] == "NO" and options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_SECRET_ACCESS_KEY"] == "sk" and options["AWS_REGION"] == "eu-west-1"


def test_s3_specific_endpoint_wins_and_aws_without_endpoint_keeps_gdal_defaults() -> None:
    assert s3_settings({"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "https://b:2"})["endpoint"] == \
        "https://b:2"
    assert "AWS_S3_ENDPOINT" not in gdal_options({"AWS_ACCESS_KEY_ID": "id"})


def test_azure_connection_string_is_parsed_for_obstore_and_passed_to_gdal() -> None:
    env = {"AZURE_STORAGE_CONNECTION_STRING": CONN}
    assert azure_settings(env) == {"account_name": "acct", "account_key": KEY,
                                   "endpoint": "http://127.0.0.1:10000/acct"}
    assert gdal_options(env)["AZURE_STORAGE_CONNECTION_STRING"] == CONN
    sas = azure_settings({"AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=https://x/;SharedAccessSignature=sv=1&sig=2"})
    assert sas == {"endpoint": "https://x/", "sas_key": "sv=1&sig=2"}
    assert azure_settings({"AZURE_STORAGE_ACCOUNT": "a", "AZURE_STORAGE_ACCESS_KEY": "k"}) == \
        {"account_name": "a", "account_key": "k"}


def test_zone_uris_resolve_onto_their_configured_bases_and_stay_inside(tmp_path: Path) -> None:
    storage = ObjectStorage(tmp_path, {"bronze": "az://raw/uploads", "silver": "s3://products/"},
                            env={"AZURE_STORAGE_CONNECTION_STRING": CONN},
                            public_urls={"silver": "https://cdn.example.org/products"})
    assert storage.object_uri("bronze://a/b.tif") == "az://raw/uploads/a/b.tif"
    assert storage.gdal_path("silver://cogs/x.tif") == "/vsis3/products/cogs/x.tif"
    assert storage.href("silver://cogs/x.tif") == "https://cdn.example.org/products/cogs/x.tif"
    assert storage.href("bronze://a/b.tif") == "az://raw/uploads/a/b.tif"
    assert storage.local_path("gold://g.tif") == tmp_path.resolve() / "gold" / "g.tif"
    assert storage.local_mirror("silver://stac/catalog.json") == tmp_path.resolve() / "silver" / "stac" / "catalog.json"
    with pytest.raises(StorageError, match="escapes the silver zone"):
        storage.resolve("silver://../other-bucket/x")
    with pytest.raises(StorageError, match="remote"):
        storage.local_path("silver://cogs/x.tif")
    assert KEY not in repr(storage)


def test_staging_folders_a_killed_process_left_are_swept_young_ones_kept(tmp_path: Path) -> None:
    import os

    storage = ObjectStorage(tmp_path, {"silver": "s3://products/"}, env={})
    old, young = tmp_path / ".staging" / "old", tmp_path / ".staging" / "young"
    for folder in (old, young):
        folder.mkdir(parents=True)
        (folder / ".x.tif.tmp").write_bytes(b"half a COG")
    long_ago = os.stat(old).st_mtime - 7 * 3600
    for path in (old / ".x.tif.tmp", old):
        os.utime(path, (long_ago, long_ago))
    storage.ensure_zones()
    assert not old.exists() and (young / ".x.tif.tmp").exists()
