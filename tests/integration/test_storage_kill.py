"""SIGKILL in the middle of a write: nothing ever appears under the final name.

- A process uploading a 24 MiB file with `storage.put_file` (obstore's multipart upload: 5 parts) to moto's S3
  server or Azurite, through a slowed loopback proxy so the kill lands while bytes are flowing: no object under the
  final name (nor a readable one). On S3 the kill leaves an incomplete multipart upload, checked: its parts are
  kept, and billed, until aborted (docs/storage.md recommends a lifecycle rule). On Azure any block already sent
  stays uncommitted (Azure discards those after 7 days); the blob does not exist.
- A process writing through `storage.staging` into a local zone: no file under the final name. Into a remote zone:
  its staging folder stays behind, and the next `Runtime.open`'s sweep (`ensure_zones`) removes it at once because
  its owner process is gone, while a live process's folder is kept.
- A `geomill worker` process killed while `raster.create_cog` uploads a COG to S3: the task is retried, the job
  completes with exactly one object, a valid COG, under the output prefix, and the staging folder is empty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geomill.storage import ObjectStorage
from geomill.tasks.raster.cogcheck import validate_cog
from procs import geomill_env, start_worker, status, stop, submit, tasks, wait_for, wait_terminal
from services import (
    AZURE_ENV,
    AZURITE_CONNECTION_STRING,
    AZURITE_ENDPOINT,
    AZURITE_HOST,
    AZURITE_PORT,
    S3_ENV,
    S3_HOST,
    S3_PORT,
    ensure_azurite,
    ensure_s3,
    fresh_bucket,
    fresh_container,
)
from tcp_proxy import TcpProxy

SRC = str(Path(__file__).resolve().parents[2] / "src")
KEY = "big/object.bin"

UPLOAD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from geomill.storage import ObjectStorage
    storage = ObjectStorage(Path(sys.argv[1]), {"silver": sys.argv[2]})
    storage.put_file(Path(sys.argv[3]), "silver://" + sys.argv[4])
    print("uploaded", flush=True)
""")

STAGED_WRITE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from geomill.storage import ObjectStorage
    storage = ObjectStorage(Path(sys.argv[1]), {"silver": sys.argv[2]} if sys.argv[2] != "local" else None)
    with storage.staging("silver://" + sys.argv[3]) as tmp, open(tmp, "wb") as out:
        while True:  # a slow writer (GDAL writing a COG): killed before it ends
            out.write(b"x" * 65536)
            out.flush()
            time.sleep(0.005)
""")


def child(script: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
    full.update(env, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", script, *args], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def slow_s3() -> Iterator[TcpProxy]:
    ensure_s3()
    proxy = TcpProxy(S3_HOST, S3_PORT)
    proxy.delay = 0.05  # ~1.3 MB/s per connection: a 24 MiB upload takes seconds
    yield proxy
    proxy.close()


def boto_s3():  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"], aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"], region_name=S3_ENV["AWS_REGION"])


def big_file(tmp_path: Path, mib: int = 24) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(np.random.default_rng(18).bytes(mib * 2**20))
    return path


def upload_and_kill(proxy: TcpProxy, env: dict[str, str], tmp_path: Path, base: str) -> None:
    """Start the upload, SIGKILL it once 4 MiB went through the proxy (a part or more on the wire), check it was
    still running then."""
    proc = child(UPLOAD, str(tmp_path / "data"), base, str(big_file(tmp_path)), KEY, env=env)
    try:
        wait_for(lambda: proxy.forwarded >= 4 * 2**20 or proc.poll() is not None, 60, "upload bytes to flow",
                 interval=0.01)
        assert proc.poll() is None, f"the upload ended before the kill: {proc.communicate()}"
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert "uploaded" not in (proc.stdout.read() if proc.stdout else "")


def test_sigkill_mid_multipart_upload_to_s3_leaves_no_object(slow_s3: TcpProxy, tmp_path: Path) -> None:
    """S3 (moto), a 24 MiB file put with multipart: killed mid-upload, no object; its incomplete upload is listed."""
    bucket = fresh_bucket("h18b-kill")
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{slow_s3.port}"}
    upload_and_kill(slow_s3, env, tmp_path, f"s3://{bucket}/silver/")

    direct = ObjectStorage(tmp_path / "check", {"silver": f"s3://{bucket}/silver/"}, env=S3_ENV)
    assert not direct.exists(f"silver://{KEY}")
    assert [b for b in direct.list("silver://")] == []
    s3 = boto_s3()
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [f"silver/{KEY}"]  # begun, never completed: parts kept until aborted
    parts = s3.list_parts(Bucket=bucket, Key=f"silver/{KEY}", UploadId=uploads[0]["UploadId"]).get("Parts", [])
    assert len(parts) < 5  # the kill came before the last part
    s3.abort_multipart_upload(Bucket=bucket, Key=f"silver/{KEY}", UploadId=uploads[0]["UploadId"])  # the rule's job
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not direct.exists(f"silver://{KEY}")


def test_sigkill_mid_block_upload_to_azure_leaves_no_blob(tmp_path: Path) -> None:
    """Azure Blob (Azurite), a 24 MiB file put in blocks: killed mid-upload, no blob, only uncommitted blocks."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    ensure_azurite()
    container = fresh_container("h18b-kill")
    proxy = TcpProxy(AZURITE_HOST, AZURITE_PORT)
    proxy.delay = 0.05
    try:
        endpoint = AZURITE_ENDPOINT.replace(f":{AZURITE_PORT}/", f":{proxy.port}/")
        env = {"AZURE_STORAGE_CONNECTION_STRING": AZURITE_CONNECTION_STRING.replace(AZURITE_ENDPOINT, endpoint)}
        upload_and_kill(proxy, env, tmp_path, f"az://{container}/silver/")
    finally:
        proxy.close()

    direct = ObjectStorage(tmp_path / "check", {"silver": f"az://{container}/silver/"}, env=AZURE_ENV)
    assert not direct.exists(f"silver://{KEY}")
    assert [b for b in direct.list("silver://")] == []
    blob = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING).get_blob_client(
        container, f"silver/{KEY}")
    with pytest.raises(ResourceNotFoundError):
        blob.get_blob_properties()
    with pytest.raises(ResourceNotFoundError):  # no blob, not even an empty one: nothing was committed
        blob.download_blob()


def test_sigkill_mid_staged_write_local_zone_no_file_under_the_final_name(tmp_path: Path) -> None:
    """Local zone: a staged write killed half-way leaves its temporary file, never the final name."""
    data = tmp_path / "data"
    proc = child(STAGED_WRITE, str(data), "local", KEY, env={})
    folder = data / "silver" / "big"
    try:
        wait_for(lambda: any(p.stat().st_size > 2**20 for p in folder.glob(".object.bin.*.tmp"))
                 or proc.poll() is not None, 60, "the staged write to grow")
        assert proc.poll() is None, proc.communicate()
    finally:
        kill(proc)
    assert not (folder / "object.bin").exists()
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".tmp")] == []


def test_killed_remote_staging_folder_is_swept_at_the_next_open_a_live_one_is_kept(tmp_path: Path) -> None:
    """Remote zone (S3 on moto): the killed writer's staging folder goes at the next ensure_zones (Runtime.open)
    although it is seconds old; a folder whose owner is alive (this process) stays."""
    ensure_s3()
    bucket = fresh_bucket("h18b-kill")
    data = tmp_path / "data"
    proc = child(STAGED_WRITE, str(data), f"s3://{bucket}/silver/", KEY, env=S3_ENV)
    scratch = data / ".staging"
    try:
        wait_for(lambda: any(p.stat().st_size > 2**20 for p in scratch.glob("*/.object.bin.*.tmp"))
                 or proc.poll() is not None, 60, "the staged write to grow")
        assert proc.poll() is None, proc.communicate()
    finally:
        kill(proc)
    [dead] = list(scratch.iterdir())
    storage = ObjectStorage(data, {"silver": f"s3://{bucket}/silver/"}, env=S3_ENV)
    with storage.staging("silver://live/object.bin") as live:
        live.write_bytes(b"still being written")
        storage.ensure_zones()  # what Runtime.open does in any process on this host
        assert not dead.exists()
        assert live.exists()
    assert list(scratch.iterdir()) == []
    assert storage.read_bytes("silver://live/object.bin") == b"still being written"
    assert not storage.exists(f"silver://{KEY}")


def noise_geotiff(path: Path, side: int = 2048) -> Path:
    """A GeoTIFF of random uint16 (incompressible): its COG is ~11 MB, a multipart upload of 3 parts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(7).integers(1, 65535, size=(1, side, side), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint16", tiled=True,
                       crs="EPSG:32618", transform=Affine(10, 0, 500000, 0, -10, 4000000)) as ds:
        ds.write(data)
    return path


def test_worker_killed_mid_cog_upload_to_s3_retry_completes_one_object_staging_clean(
        slow_s3: TcpProxy, tmp_path: Path) -> None:
    """process_raster local→S3 (moto): the worker process is SIGKILLed while its COG's multipart upload is on the
    wire; the retry completes the job, exactly one object is under the output prefix, and no staging is left."""
    bucket = fresh_bucket("h18b-kill")
    data = tmp_path / "data"
    noise_geotiff(data / "bronze" / "scenes" / "noise.tif")
    env = geomill_env(data, lease_seconds=4, janitor_interval_seconds=0.3, silver_url=f"s3://{bucket}/silver/")
    for name in [k for k in env if k.startswith(("AWS_", "AZURE_"))]:
        del env[name]
    env.update(S3_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{slow_s3.port}")
    job_id = submit(env, "process_raster", source="bronze://scenes/noise.tif")
    s3 = boto_s3()
    worker = start_worker(env, 1)
    try:
        running = wait_for(lambda: next((t for t in tasks(env, job_id) if t["status"] == "processing"
                                         and t["task_type"] == "raster.create_cog"), None), 120, "create_cog to start")
        wait_for(lambda: s3.list_multipart_uploads(Bucket=bucket).get("Uploads") and slow_s3.forwarded > 2**20,
                 120, "the COG's multipart upload to be on the wire", interval=0.05)
        staged = list((data / ".staging").iterdir())
        assert len(staged) == 1 and any(staged[0].glob("*.tif*"))
        os.kill(int(running["executed_by_app"].rsplit("#", 1)[1]), signal.SIGKILL)
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # killed mid-upload: no object (the lease holds
        # the retry back for 4 s)
        doc = wait_terminal(env, job_id, timeout=180)
    finally:
        stop(worker)
    assert doc["status"] == "completed", doc
    cog = [t for t in tasks(env, job_id) if t["task_type"] == "raster.create_cog"]
    [redone] = cog
    assert redone["attempt"] >= 2, cog  # 2, unless a heartbeat starved on this shared machine lost a lease again

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len([k for k in keys if k.endswith(".tif")]) == 1, keys
    [key] = [k for k in keys if k.endswith(".tif")]
    direct = ObjectStorage(tmp_path / "check", {"silver": f"s3://{bucket}/silver/"}, env=S3_ENV)
    valid, errors, _ = validate_cog(direct.gdal_path(f"s3://{bucket}/{key}"))
    assert valid and not errors
    assert list((data / ".staging").iterdir()) == []  # the dead attempt's folder swept, the retry's removed
    leftover = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert leftover and {u["Key"] for u in leftover} == {key}  # the killed attempt's parts (a lifecycle rule's job)
    for upload in leftover:
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    assert status(env, job_id)["status"] == "completed"
