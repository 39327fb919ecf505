"""`geomill health` probes each remote zone (moto's S3 server, Azurite): up when it answers, down (exit 1) for an
endpoint that refuses connections, one that never answers (black-holed: the probe's short timeout) and a missing
bucket; never a credential or a SAS query string in its output, JSON or text.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from procs import cli, geomill_env
from services import (
    AZURITE_ACCOUNT,
    AZURITE_ENDPOINT,
    AZURITE_KEY,
    S3_ENV,
    S3_HOST,
    S3_PORT,
    ensure_azurite,
    ensure_s3,
    fresh_bucket,
    fresh_container,
)
from tcp_proxy import TcpProxy

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback here


def health(tmp_path: Path, cloud_env: dict[str, str], zones: dict[str, str]) -> tuple[int, dict, str, float]:
    """(exit code, the --json document, the text output, seconds) of `geomill health` run twice as a process."""
    env = geomill_env(tmp_path / "data", **zones)
    for name in [k for k in env if k.startswith(("AWS_", "AZURE_"))]:
        del env[name]
    env.update(cloud_env)
    started = time.monotonic()
    as_json = cli(env, "health", "--json", timeout=60)
    seconds = time.monotonic() - started
    text = cli(env, "health", timeout=60)
    assert as_json.returncode == text.returncode, (as_json.stderr, text.stderr)
    return as_json.returncode, json.loads(as_json.stdout), text.stdout + text.stderr + as_json.stderr, seconds


def assert_no_secret(output: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in output


def test_s3_zones_up_then_a_refused_endpoint_and_a_missing_bucket_are_down_without_secrets(tmp_path: Path) -> None:
    """S3 zones (moto): answering → up; endpoint refusing connections → down; bucket absent → down."""
    ensure_s3()
    bucket = fresh_bucket("h18b-health")
    zones = {"bronze_url": f"s3://{bucket}/bronze/", "silver_url": f"s3://{bucket}/silver/"}
    secret = S3_ENV["AWS_SECRET_ACCESS_KEY"]

    code, doc, text, _ = health(tmp_path / "up", S3_ENV, zones)
    storage = doc["components"]["storage"]
    assert code == 0 and storage["status"] == "ok", storage
    assert {z: s["status"] for z, s in storage["zones"].items()} == {"bronze": "up", "silver": "up"}
    assert storage["zones"]["silver"]["uri"] == f"s3://{bucket}/silver/"
    assert "gold" not in storage["zones"]  # local: checked by writing to it
    assert_no_secret(json.dumps(doc) + text, secret)

    code, doc, text, seconds = health(tmp_path / "refused", {**S3_ENV, "AWS_ENDPOINT_URL": CLOSED}, zones)
    storage = doc["components"]["storage"]
    assert code == 1 and doc["status"] == "down" and storage["status"] == "down", storage
    assert {s["status"] for s in storage["zones"].values()} == {"down"}
    assert "ConnectionError" in storage["zones"]["silver"]["error"]
    assert "silver" in storage["error"] and "silver  down" in text
    assert seconds < 20  # no retries with backoff: the probe fails on the first refused connection
    assert_no_secret(json.dumps(doc) + text, secret)

    code, doc, text, _ = health(tmp_path / "missing", S3_ENV, {"silver_url": f"s3://{bucket}-gone/silver/"})
    storage = doc["components"]["storage"]
    assert code == 1 and storage["zones"]["silver"]["status"] == "down"
    assert "does not exist" in storage["zones"]["silver"]["error"]
    assert_no_secret(json.dumps(doc) + text, secret)


def test_a_black_holed_s3_endpoint_is_down_within_the_probe_timeout(tmp_path: Path) -> None:
    """S3 endpoint that accepts connections and never answers (a partition): down after ~2 s, not minutes."""
    ensure_s3()
    bucket = fresh_bucket("h18b-health")
    proxy = TcpProxy(S3_HOST, S3_PORT)
    proxy.blackhole()
    try:
        code, doc, text, seconds = health(tmp_path, {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
                                          {"silver_url": f"s3://{bucket}/silver/"})
    finally:
        proxy.close()
    silver = doc["components"]["storage"]["zones"]["silver"]
    assert code == 1 and silver["status"] == "down", silver
    assert 1.5 <= silver["seconds"] < 6, silver  # the 2 s probe timeout, no retries
    assert seconds < 25
    assert_no_secret(json.dumps(doc) + text, S3_ENV["AWS_SECRET_ACCESS_KEY"])


def test_azure_zone_with_a_sas_token_up_then_down_never_shows_the_sas(tmp_path: Path) -> None:
    """Azure zone (Azurite) reached with a container SAS in the connection string: up; the same SAS against a
    closed port: down; neither output holds the SAS (signature or whole) nor the account key."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    ensure_azurite()
    container = fresh_container("h18b-health")
    sas = generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True, write=True),
                                 expiry=datetime.now(tz=UTC) + timedelta(hours=1))
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    zones = {"silver_url": f"az://{container}/silver/"}

    def conn(endpoint: str) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": f"AccountName={AZURITE_ACCOUNT};BlobEndpoint={endpoint};"
                                                   f"SharedAccessSignature={sas}"}

    code, doc, text, _ = health(tmp_path / "up", conn(AZURITE_ENDPOINT), zones)
    storage = doc["components"]["storage"]
    assert code == 0 and storage["zones"]["silver"]["status"] == "up", storage
    assert_no_secret(json.dumps(doc) + text, sas, signature, AZURITE_KEY)

    code, doc, text, _ = health(tmp_path / "down", conn(f"{CLOSED}/{AZURITE_ACCOUNT}"), zones)
    silver = doc["components"]["storage"]["zones"]["silver"]
    assert code == 1 and silver["status"] == "down", silver
    assert_no_secret(json.dumps(doc) + text, sas, signature, AZURITE_KEY)
