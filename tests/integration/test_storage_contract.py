"""One storage contract, three backends: local folders, S3 (moto's server) and Azure Blob (Azurite).

Every test runs against a zone (``silver://``) whose base is a local folder, an S3 bucket prefix or an Azure
container prefix, and checks real outcomes: bytes read back, listings in bounded batches, nothing published when a
staged write fails, and InvalidInput at once (naming the URI) for a missing object, bucket or refused credentials.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from geomill.domain import InvalidInput
from geomill.storage import ObjectStorage, StorageError
from services import (
    AZURITE_ACCOUNT,
    AZURITE_ENDPOINT,
    AZURITE_KEY,
    ensure_azurite,
    ensure_s3,
    fresh_bucket,
    fresh_container,
    moto_with_auth,
)

BACKENDS = ["local", "s3", "az"]


def make_storage(backend: str, tmp_path: Path) -> tuple[ObjectStorage, dict[str, str], str]:
    """(storage with silver on `backend`, its environment, the bucket/container or "")."""
    if backend == "local":
        return ObjectStorage(tmp_path / "data", env={}), {}, ""
    if backend == "s3":
        env = ensure_s3()
        bucket = fresh_bucket()
        return ObjectStorage(tmp_path / "data", {"silver": f"s3://{bucket}/silver/"}, env=env), env, bucket
    env = ensure_azurite()
    container = fresh_container()
    return ObjectStorage(tmp_path / "data", {"silver": f"az://{container}/silver"}, env=env), env, container


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ObjectStorage, str]]:
    storage, _, bucket = make_storage(request.param, tmp_path)
    storage.ensure_zones()
    yield request.param, storage, bucket


def test_write_stat_read_delete_round_trip_each_backend(store: tuple[str, ObjectStorage, str]) -> None:
    backend, storage, bucket = store
    uri = "silver://a/b/hello.txt"
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"hello world")
    assert storage.exists(uri)
    stat = storage.stat(uri)
    assert stat.size == 11
    assert (stat.etag is not None) == (backend != "local")
    assert storage.read_bytes(uri) == b"hello world"
    assert storage.is_remote(uri) == (backend != "local")
    if backend == "local":
        assert storage.gdal_path(uri) == str(storage.local_path(uri))
    else:
        assert storage.object_uri(uri) == f"{backend}://{bucket}/silver/a/b/hello.txt"
        assert storage.gdal_path(uri) == f"/vsi{backend}/{bucket}/silver/a/b/hello.txt"
        with pytest.raises(StorageError, match="remote"):
            storage.local_path(uri)
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # deleting what is gone is not an error


def test_put_file_and_fetch_stream_a_local_file_each_backend(store: tuple[str, ObjectStorage, str],
                                                             tmp_path: Path) -> None:
    _, storage, _ = store
    payload = uuid.uuid4().bytes * 750_000  # 12 MB: obstore uploads it in parts (multipart above 5 MB)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    storage.put_file(src, "silver://bin/payload.bin")
    assert src.read_bytes() == payload  # a copy is published; the local file stays
    assert storage.stat("silver://bin/payload.bin").size == len(payload)
    dest = storage.fetch("silver://bin/payload.bin", tmp_path / "back" / "payload.bin")
    assert dest.read_bytes() == payload


def test_list_streams_2500_objects_in_bounded_batches_each_backend(store: tuple[str, ObjectStorage, str]) -> None:
    _, storage, _ = store
    names = [f"silver://many/{i // 100:02d}/obj-{i:05d}.txt" for i in range(2500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda uri: storage.write_bytes(uri, b"x"), names))
    storage.write_bytes("silver://many/readme.md", b"not a txt")
    batches = list(storage.list("silver://many/", pattern="*.txt", batch=1000))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    seen = [item.uri.rsplit("/", 1)[1] for batch in batches for item in batch]
    assert sorted(seen) == sorted(n.rsplit("/", 1)[1] for n in names)
    assert all(item.size == 1 for batch in batches for item in batch)
    assert sum(len(b) for b in storage.list("silver://many/")) == 2501


def test_staging_publishes_on_success_and_leaves_nothing_on_failure_each_backend(
        store: tuple[str, ObjectStorage, str]) -> None:
    _, storage, _ = store
    with storage.staging("silver://out/result.bin") as tmp:
        tmp.write_bytes(b"complete")
        Path(str(tmp) + ".aux.xml").write_bytes(b"side file")  # what GDAL may leave beside a file
        assert not storage.exists("silver://out/result.bin")  # nothing under the final name while writing
    assert storage.read_bytes("silver://out/result.bin") == b"complete"
    assert not tmp.exists() and not Path(str(tmp) + ".aux.xml").exists()

    with pytest.raises(RuntimeError, match="boom"), storage.staging("silver://out/failed.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert not tmp.exists()
    assert not storage.exists("silver://out/failed.bin")
    assert [item.uri.rsplit("/", 1)[1] for batch in storage.list("silver://out/") for item in batch] == ["result.bin"]


def test_missing_object_is_invalid_input_naming_the_uri_each_backend(store: tuple[str, ObjectStorage, str]) -> None:
    _, storage, _ = store
    for call in (storage.stat, storage.read_bytes):
        with pytest.raises(InvalidInput, match=r"silver://nope/missing\.tif.*no such"):
            call("silver://nope/missing.tif")


@pytest.mark.parametrize("backend", ["s3", "az"])
def test_missing_bucket_is_invalid_input_saying_it_does_not_exist_cloud(backend: str, tmp_path: Path) -> None:
    env = ensure_s3() if backend == "s3" else ensure_azurite()
    name = f"missing-{uuid.uuid4().hex[:12]}"
    storage = ObjectStorage(tmp_path, env=env)
    uri = f"{backend}://{name}/x.tif"
    for call in (storage.stat, storage.read_bytes, lambda u: storage.write_bytes(u, b"1")):
        with pytest.raises(InvalidInput, match=rf"{name}.*does not exist"):
            call(uri)
    with pytest.raises(InvalidInput, match="does not exist"):
        list(storage.list(f"{backend}://{name}/"))


def test_bad_credentials_are_invalid_input_saying_access_denied_azure(tmp_path: Path) -> None:
    """Azurite checks shared-key signatures (moto's server accepts any key, so S3 is not covered here)."""
    ensure_azurite()
    container = fresh_container()
    wrong_key = "QUJD" + AZURITE_KEY[4:]
    env = {"AZURE_STORAGE_CONNECTION_STRING": f"AccountName={AZURITE_ACCOUNT};AccountKey={wrong_key};"
                                              f"BlobEndpoint={AZURITE_ENDPOINT};"}
    storage = ObjectStorage(tmp_path, {"bronze": f"az://{container}/"}, env=env)
    for call in (storage.stat, lambda u: storage.write_bytes(u, b"1")):
        with pytest.raises(InvalidInput, match="access denied") as caught:
            call("bronze://scene.tif")
        assert wrong_key not in str(caught.value) and "bronze://scene.tif" in str(caught.value)
    with pytest.raises(InvalidInput, match="access denied"):
        list(storage.list("bronze://"))
    assert wrong_key not in repr(storage)


def test_unreachable_endpoint_is_a_transient_error_not_invalid_input_s3(tmp_path: Path) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_REGION": "us-east-1"}
    storage = ObjectStorage(tmp_path, env=env)
    with pytest.raises(Exception) as caught:
        storage.stat("s3://some-bucket/x.tif")
    assert not isinstance(caught.value, InvalidInput)


def test_bad_credentials_are_invalid_input_saying_access_denied_s3(tmp_path: Path) -> None:
    """moto checks credentials once its free actions (here: creating the bucket) are spent."""
    import boto3

    with moto_with_auth(free_actions=1) as endpoint:
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                     region_name="us-east-1").create_bucket(Bucket="guarded")
        secret = "wrong-secret-key-123"
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY", "AWS_SECRET_ACCESS_KEY": secret,
               "AWS_REGION": "us-east-1"}
        storage = ObjectStorage(tmp_path, {"bronze": "s3://guarded/"}, env=env)
        for call in (storage.stat, lambda u: storage.write_bytes(u, b"1")):
            with pytest.raises(InvalidInput, match="access denied") as caught:
                call("bronze://scene.tif")
            assert secret not in str(caught.value) and "bronze://scene.tif" in str(caught.value)
        with pytest.raises(InvalidInput, match="access denied"):
            list(storage.list("bronze://"))
