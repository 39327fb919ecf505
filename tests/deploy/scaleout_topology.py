"""deploy/compose/scaleout.yaml's services run outside Compose, and the end-to-end check of that topology.

`Topology` runs each service's command as a local process; `PodmanTopology` runs the image itself, one container
per service (bench/deploy_podman.py). Both take each service's command and environment from the Compose file (its
variables interpolated as `docker compose` does, the image's ENV underneath) and map only what Compose would give:
service host names (postgres, rabbitmq, s3) to 127.0.0.1, and ports (one host network here) to free ports. Local
processes also get folders for the volumes and for each container's own data folder.
"""

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import psycopg

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

    def service_env(self, service: str) -> dict[str, str]:
        """The image's ENV + the service's environment; hosts to 127.0.0.1, the role's port to a free one."""
        spec = self.doc["services"][service]
        env = {k: v for k, v in image_env().items() if not k.startswith(("PATH", "PYTHON"))}
        env.update(service_env(self.doc, service))
        env = {k: re.sub(rf"(?<=[@/])({'|'.join(HOSTS)})(?=:\d)", "127.0.0.1", v) for k, v in env.items()}
        self.ports.setdefault(service, _free_port())
        env["GEOMILL_PORT" if "ports" in spec else "GEOMILL_PROBE_PORT"] = str(self.ports[service])
        return env

    def volumes(self, service: str) -> dict[str, tuple[Path, bool]]:
        """Mount target → (host folder, read-only)."""
        mounts = {}
        for volume in self.doc["services"][service].get("volumes", []):
            name, target, *mode = volume.split(":")
            mounts[target] = (self.root / "volumes" / name, mode == ["ro"])
            mounts[target][0].mkdir(parents=True, exist_ok=True)
            mounts[target][0].chmod(0o777)  # the image's user (10001) writes there too
        return mounts

    def path_in(self, service: str, path: str) -> str:
        """`path` (as the container sees it) as the service's process sees it: volumes are folders here."""
        mounts = {"/var/lib/geomill/data": self.root / service / "data"}  # the container's own file system
        mounts.update({target: host for target, (host, _) in self.volumes(service).items()})
        for target in sorted(mounts, key=len, reverse=True):
            path = path.replace(target, str(mounts[target]))
        return path

    def env(self, service: str) -> dict[str, str]:
        env = {key: self.path_in(service, value) for key, value in self.service_env(service).items()}
        env["GEOMILL_HOST"] = "127.0.0.1"
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

    def role_of(self, executed_by_app: str) -> str:
        """The service whose supervisor started the worker process that ran a task (`app#pid`)."""
        pid = int(executed_by_app.rsplit("#", 1)[1])
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return next(s for s, p in self.procs.items() if p.pid == ppid)

    def stop(self) -> None:
        stop(*self.procs.values())


@contextmanager
def scaleout(root: Path, topology: type[Topology] = Topology, **extra: str) -> Iterator[Topology]:
    """The scale-out topology with a fresh database, RabbitMQ vhost and S3 bucket; stopped afterwards."""
    ensure_s3()
    bucket = f"h24-scaleout-{uuid.uuid4().hex[:12]}"
    with fresh_database("h24_scaleout") as db_url, fresh_vhost("h24_scaleout") as broker_url:
        variables = {  # what a .env file beside the Compose file would hold
            "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "unused", "POSTGRES_DB": db_url.rsplit("/", 1)[1],
            "RABBITMQ_USER": "guest", "RABBITMQ_PASSWORD": "guest", "RABBITMQ_VHOST": broker_url.rsplit("/", 1)[1],
            "GEOMILL_BUCKET": bucket, "S3_ACCESS_KEY": S3_ENV["AWS_ACCESS_KEY_ID"],
            "S3_SECRET_KEY": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "GEOMILL_RASTER_PROCESSES": "1", "GEOMILL_VECTOR_PROCESSES": "1",  # 2 cores here
            **extra,
        }
        top = topology(compose("scaleout.yaml", variables), root)
        try:
            yield top
        finally:
            top.stop()


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


def complete_a_raster_and_a_vector_job(top: Topology) -> dict[str, Any]:
    """Start the topology as Compose would (bucket, migrations, then the roles), submit a raster job (S3) and a
    vector job (the inbox volume) over HTTP, and check their products and which role ran each task."""
    top.run("make_bucket")
    top.run("migrate")
    for service in ROLES:
        top.start(service)
    for service in ROLES:
        wait_for(lambda s=service: top.ready(s), 180, f"{service} to be ready")
    key = json.loads(top.run("api", "api-key", "create", "h24", "--scopes", "read,submit", "--json").stdout)["secret"]

    api_env = top.service_env("api")
    s3 = boto3.client("s3", endpoint_url=api_env["AWS_ENDPOINT_URL"], aws_access_key_id=api_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=api_env["AWS_SECRET_ACCESS_KEY"], region_name=api_env["AWS_REGION"])
    bucket = api_env["GEOMILL_BRONZE_URL"].split("/")[2]
    s3.upload_file(str(SAMPLE_RASTER), bucket, "bronze/h24/shade.tif")
    inbox = json.loads(service_env(top.doc, "api")["GEOMILL_SOURCE_ROOTS"])[0]  # a volume of api and worker_vector
    for part in SAMPLE_VECTOR.glob("coutwildrnp.*"):
        shutil.copy(part, top.volumes("api")[inbox][0] / part.name)
    source = top.path_in("api", f"{inbox}/coutwildrnp.shp")

    raster = _http(top, "POST", "/api/jobs/submit/process_raster", key, {"source": "bronze://h24/shade.tif"})
    vector = _http(top, "POST", "/api/jobs/submit/process_vector", key, {"source": source, "table": "h24_wilderness"})
    raster_doc, vector_doc = _finished(top, raster["job_id"], key), _finished(top, vector["job_id"], key)
    assert raster_doc["status"] == "completed", raster_doc
    assert vector_doc["status"] == "completed", vector_doc

    [out] = raster_doc["result"]["outputs"]
    assert out["cog_uri"].startswith("silver://") and out["valid"] is True
    local_cog = top.root / "cog.tif"
    s3.download_file(bucket, out["cog_path"].removeprefix(f"s3://{bucket}/"), str(local_cog))
    valid, errors, _ = validate_cog(local_cog)
    assert valid and not errors
    with psycopg.connect(api_env["GEOMILL_DATABASE_URL"]) as conn:
        count = conn.execute("SELECT count(*) FROM geo.h24_wilderness").fetchone()
    assert count == (67,)

    ran_by = {}
    for job_id, role in ((raster["job_id"], "worker_raster"), (vector["job_id"], "worker_vector")):
        tasks = _http(top, "GET", f"/api/jobs/{job_id}/tasks?limit=1000", key)["items"]
        ran_by[role] = {top.role_of(t["executed_by_app"]) for t in tasks}
        assert ran_by[role] == {role}, ran_by
    return {"raster": raster_doc, "vector": vector_doc, "ran_by": ran_by}
