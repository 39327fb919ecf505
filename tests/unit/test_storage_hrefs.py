"""What a STAC asset or MosaicJSON names for an object (ObjectStorage.href): the zone's public base URL, else a
signed URL when signing is on, else the object's URI; local files keep their path. Signing is offline (no
network): S3 SigV4 from the keys, an Azure service SAS from the account key; a SAS token alone cannot sign."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from geomill.domain import InvalidInput
from geomill.storage import ObjectStorage

S3 = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example", "AWS_REGION": "eu-west-1"}
AZ_KEY = "a2V5LWZvci10ZXN0cy1vbmx5LW5vdC1hLXJlYWwta2V5LTAwMDAwMDAwMDAwMA=="
AZ = {"AZURE_STORAGE_ACCOUNT": "geomilltest", "AZURE_STORAGE_ACCESS_KEY": AZ_KEY}
ZONES = {"silver": "s3://products/silver/", "gold": "az://gold-container/g/"}


def storage(tmp_path: Path, **kwargs: Any) -> ObjectStorage:
    return ObjectStorage(tmp_path, ZONES, env={**S3, **AZ}, **kwargs)


def test_an_object_is_named_by_its_uri_when_neither_public_base_nor_signing_is_set(tmp_path: Path) -> None:
    st = storage(tmp_path)
    assert st.href("silver://cogs/a.tif") == "s3://products/silver/cogs/a.tif"
    assert st.href("gold://x/b.tif") == "az://gold-container/g/x/b.tif"
    assert st.href("bronze://c.tif") == str(tmp_path.resolve() / "bronze" / "c.tif")


def test_signed_urls_are_presigned_get_urls_valid_for_the_configured_time(tmp_path: Path) -> None:
    st = storage(tmp_path, signed_url_seconds=900)
    s3 = urlsplit(st.href("silver://cogs/a.tif"))
    query = parse_qs(s3.query)
    assert s3.scheme == "https" and s3.path.endswith("/silver/cogs/a.tif") and "products" in s3.netloc + s3.path
    assert query["X-Amz-Expires"] == ["900"] and query["X-Amz-Signature"][0]
    assert "secret-example" not in s3.geturl()
    az = urlsplit(st.href("gold://x/b.tif"))
    sas = parse_qs(az.query)
    assert az.netloc == "geomilltest.blob.core.windows.net" and az.path == "/gold-container/g/x/b.tif"
    assert sas["sp"] == ["r"] and sas["sr"] == ["b"] and sas["sig"][0] and AZ_KEY not in az.geturl()
    assert st.href("bronze://c.tif").startswith("/")  # a local file is never signed


def test_the_public_base_wins_over_signing_for_its_zone(tmp_path: Path) -> None:
    st = storage(tmp_path, signed_url_seconds=900, public_urls={"silver": "https://cdn.example.org/p"})
    assert st.href("silver://cogs/a.tif") == "https://cdn.example.org/p/cogs/a.tif"
    assert "sig=" in st.href("gold://x/b.tif")


def test_an_azure_sas_token_alone_cannot_sign_and_says_so(tmp_path: Path) -> None:
    st = ObjectStorage(tmp_path, ZONES, env={"AZURE_STORAGE_ACCOUNT": "geomilltest",
                                             "AZURE_STORAGE_SAS_TOKEN": "sv=2023-11-03&sig=c2VjcmV0"},
                       signed_url_seconds=60)
    with pytest.raises(InvalidInput, match="cannot sign a URL for 'gold://x/b.tif'.*account key") as caught:
        st.href("gold://x/b.tif")
    assert "c2VjcmV0" not in str(caught.value)
