"""The scale-out topology of deploy/compose/scaleout.yaml, run as local processes: each service's command and
environment are read from the Compose file (its variables interpolated as `docker compose` does, the image's ENV
from the Dockerfile underneath), and only what a container gives for free is mapped: service host names
(postgres, rabbitmq, s3) to 127.0.0.1, volumes to folders, each container's private data folder and ports to its
own. The topology then completes a raster job (bronze and silver in S3, on moto) and a vector job (a Shapefile in
the `inbox` volume, loaded into PostGIS) submitted over HTTP, with each task run by the role geomill routes it to.

Vector input: a file in the `inbox` volume that the API and worker_vector mount, not S3: process_vector does not
read object storage yet (issue 18; docs/deployment.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from deploy_manifests import ROOT, compose, image_env, service_env
from geomill.tasks.raster.cogcheck import validate_cog
from procs import stop, wait_for
from services import S3_ENV, ensure_s3, fresh_database, fresh_vhost

HOSTS = ("postgres", "rabbitmq", "s3")  # Compose service names: one host, 127.0.0.1, here
ROLES = ("api", "platform_only", "worker_raster", "worker_vector", "worker_long")
SAMPLE_RASTER = ROOT / "src" / "geomill" / "examples" / "data" / "shade.tif"
SAMPLE_VECTOR = ROOT / "tests" / "data" / "vector"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Topology:
    """The Compose file's services as local processes."""

    def __init__(self, doc: dict[str, Any], root: Path) -> None:
        self.doc, self.root = doc, root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def env(self, service: str) -> dict[str, str]:
        spec = self.doc["services"][service]
        env = {k: v for k, v in image_env().items() if not k.startswith(("PATH", "PYTHON"))}
        env.update(service_env(self.doc, service))
        mounts = {"/var/lib/geomill/data": self.root / service / "data"}  # the container's own file system
        for volume in spec.get("volumes", []):
            name, target = volume.split(":")[:2]
            mounts[target] = self.root / "volumes" / name
        self.ports.setdefault(service, _free_port())
        for key, value in env.items():
            value = re.sub(rf"(?<=[@/])({'|'.join(HOSTS)})(?=:\d)", "127.0.0.1", value)
            for target in sorted(mounts, key=len, reverse=True):
                value = value.replace(target, str(mounts[target]))
            env[key] = value
        env["GEOMILL_HOST"] = "127.0.0.1"
        env["GEOMILL_PORT" if "ports" in spec else "GEOMILL_PROBE_PORT"] = str(self.ports[service])
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GEOMILL_", "AWS_"))}
        return {**base, **env}

    def command(self, service: str, override: tuple[str, ...] = ()) -> list[str]:
        """The image's entrypoint (`geomill`) + the service's command, or `override` (`docker compose run S …`)."""
        spec = self.doc["services"][service]
        entrypoint = spec.get("entrypoint", ["geomill"])
        program = [sys.executable, "-m", "geomill.cli"] if entrypoint[0] == "geomill" else [sys.executable]
        return [*program, *entrypoint[1:], *(override or spec["command"])]

    def run(self, service: str, *override: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(service, override), env=self.env(service), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (service, done.stderr[-2000:])
        return done

    def start(self, service: str) -> None:
        log = (self.root / f"{service}.log").open("wb")
        self.procs[service] = subprocess.Popen(self.command(service), env=self.env(service), stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, service: str) -> bool:
        assert self.procs[service].poll() is None, (service, self.log(service))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[service]}/readyz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self, service: str) -> str:
        return (self.root / f"{service}.log").read_text(errors="replace")[-3000:]

    def role_of_pid(self, pid: int) -> str:
        """The service whose supervisor started worker process `pid`."""
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return next(s for s, p in self.procs.items() if p.pid == ppid)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    ensure_s3()
    bucket = f"h24-scaleout-{uuid.uuid4().hex[:12]}"
    with fresh_database("h24_scaleout") as db_url, fresh_vhost("h24_scaleout") as broker_url:
        variables = {  # what a .env file beside the Compose file would hold
            "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "unused", "POSTGRES_DB": db_url.rsplit("/", 1)[1],
            "RABBITMQ_USER": "guest", "RABBITMQ_PASSWORD": "guest", "RABBITMQ_VHOST": broker_url.rsplit("/", 1)[1],
            "GEOMILL_BUCKET": bucket, "S3_ACCESS_KEY": S3_ENV["AWS_ACCESS_KEY_ID"],
            "S3_SECRET_KEY": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "GEOMILL_RASTER_PROCESSES": "1", "GEOMILL_VECTOR_PROCESSES": "1",  # 2 cores here
        }
        top = Topology(compose("scaleout.yaml", variables), tmp_path)
        try:
            yield top
        finally:
            stop(*top.procs.values())


def _http(top: Topology, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{top.ports['api']}{path}", data=data, method=method,
                                     headers={"X-API-Key": key, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None


def _finished(top: Topology, job_id: str, key: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = _http(top, "GET", f"/api/jobs/status/{job_id}", key)
        return doc if doc["status"] not in ("queued", "processing") else None

    try:
        return dict(wait_for(done, 240, f"job {job_id}", interval=1.0))
    except AssertionError:
        raise AssertionError({s: top.log(s) for s in top.procs}) from None


def test_the_scaleout_compose_topology_completes_a_raster_and_a_vector_job(topology: Topology) -> None:
    top = topology
    top.run("make_bucket")
    top.run("migrate")
    for service in ROLES:
        top.start(service)
    for service in ROLES:
        wait_for(lambda s=service: top.ready(s), 120, f"{service} to be ready")
    key = json.loads(top.run("api", "api-key", "create", "h24", "--scopes", "read,submit", "--json").stdout)["secret"]

    api_env = top.env("api")
    s3 = boto3.client("s3", endpoint_url=api_env["AWS_ENDPOINT_URL"], aws_access_key_id=api_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=api_env["AWS_SECRET_ACCESS_KEY"], region_name=api_env["AWS_REGION"])
    bucket = api_env["GEOMILL_BRONZE_URL"].split("/")[2]
    s3.upload_file(str(SAMPLE_RASTER), bucket, "bronze/h24/shade.tif")
    inbox = top.root / "volumes" / "inbox"
    inbox.mkdir(parents=True)
    for part in SAMPLE_VECTOR.glob("coutwildrnp.*"):
        shutil.copy(part, inbox / part.name)
    vector_source = json.loads(api_env["GEOMILL_SOURCE_ROOTS"])[0] + "/coutwildrnp.shp"

    raster = _http(top, "POST", "/api/jobs/submit/process_raster", key, {"source": "bronze://h24/shade.tif"})
    vector = _http(top, "POST", "/api/jobs/submit/process_vector", key,
                   {"source": vector_source, "table": "h24_wilderness"})
    raster_doc, vector_doc = _finished(top, raster["job_id"], key), _finished(top, vector["job_id"], key)
    assert raster_doc["status"] == "completed", raster_doc
    assert vector_doc["status"] == "completed", vector_doc

    [out] = raster_doc["result"]["outputs"]
    assert out["cog_uri"].startswith("silver://") and out["valid"] is True
    key_in_bucket = out["cog_path"].removeprefix(f"s3://{bucket}/")
    local_cog = top.root / "cog.tif"
    s3.download_file(bucket, key_in_bucket, str(local_cog))
    valid, errors, _ = validate_cog(local_cog)
    assert valid and not errors
    with psycopg.connect(api_env["GEOMILL_DATABASE_URL"]) as conn:
        count = conn.execute("SELECT count(*) FROM geo.h24_wilderness").fetchone()
    assert count == (67,)

    for job_id, role in ((raster["job_id"], "worker_raster"), (vector["job_id"], "worker_vector")):
        tasks = _http(top, "GET", f"/api/jobs/{job_id}/tasks?limit=1000", key)["items"]
        assert tasks and {top.role_of_pid(int(t["executed_by_app"].rsplit("#", 1)[1])) for t in tasks} == {role}
