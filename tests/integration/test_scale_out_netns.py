"""Shared-nothing scale-out (issue 18): geomill hosts that share nothing but PostgreSQL, RabbitMQ and the object store.

Each host is a Linux network namespace (tests/netns.py) with its own empty data folder, reaching the services only
through forwarders on the root side of its own veth pair: `platform_only` on host a, `worker_raster` on b,
`worker_vector` on c, and a second `worker_raster` on d for the partition. Bronze and silver are zones in one S3
bucket (moto, versioning on, so every PUT of an object is counted). A raster job and a vector job (sources in the
bucket, the vector one into PostGIS) are submitted with the CLI on the platform host; the test watches the shared
database directly. About a minute: marked slow (CI runs it).

Partition: host b is held in the middle of a COG (a hold fault point after the COG is staged, before it is
published) and its cable is pulled: its lease watchdog stops the task and drops its outcome, the janitor reclaims
the lease, host d completes the task; once b's cable is back, the object under the COG's key is still the one d
published (one version, d's etag).
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from geomill.domain import Job, Task
from geomill.store.postgres import PostgresStore
from netns import Host, Network, require_netns
from procs import geomill_env, wait_for
from samples import data, raster
from services import S3_ENV, ensure_postgres, ensure_s3, fresh_bucket, fresh_database, fresh_vhost

NAME = "h18n"  # prefix of this module's database, virtual host, bucket and namespaces' app names
LEASE = 6.0  # short leases: a partitioned worker stops its task within ~4.5 s, the janitor reclaims it at 6 s
HOLD = 40.0  # how long host b holds its staged COG: far past the partition (the interrupt must end it first)
ROLES = {"a": "platform_only", "b": "worker_raster", "c": "worker_vector", "d": "worker_raster"}

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    net: Network
    store: PostgresStore  # the test's own view of the shared database (root namespace, loopback)
    s3: Any  # boto3 client on the emulator, for the test's own checks
    bucket: str
    db_url: str
    broker_url: str

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    def app(self, name: str) -> str:
        return f"{NAME}-host-{name}"

    def env(self, name: str, **settings: object) -> dict[str, str]:
        """What host `name`'s processes see: the services at its forwarders' addresses, S3 zones, its app name."""
        host = self.host(name)
        env = geomill_env(
            host.data_dir, self.db_url.replace("127.0.0.1:5432", host.address("postgres")),
            app_name=self.app(name), workers=1, lease_seconds=LEASE, janitor_interval_seconds=0.5,
            db_socket_timeout_seconds=2, cancel_grace_seconds=3, shutdown_grace_seconds=2, log_level="INFO",
            # the retry of b's task can be delivered to b's consumer, which RabbitMQ still believes alive (it
            # notices only after two missed 30 s heartbeats): the outbox sends it again after this many seconds
            broker_republish_seconds=3,
            broker_url=self.broker_url.replace("127.0.0.1:5672", host.address("rabbitmq")),
            bronze_url=f"s3://{self.bucket}/bronze/", silver_url=f"s3://{self.bucket}/silver/", **settings)
        env = {k: v for k, v in env.items() if not k.startswith("AWS_") or k == "AWS_SHARED_CREDENTIALS_FILE"}
        return {**env, **S3_ENV, "AWS_ENDPOINT_URL": f"http://{host.address('s3')}"}

    def start(self, name: str, **settings: object) -> None:
        host = self.host(name)
        host.start(self.env(name, **settings), host.data_dir.parent / f"host-{name}.log", "serve", "--mode", ROLES[name])

    def log(self, name: str) -> str:
        return (self.host(name).data_dir.parent / f"host-{name}.log").read_text(errors="replace")

    def wait_reporting(self, *names: str, within: float = 2.0, timeout: float = 90) -> None:
        """Until the supervisor of each host has reported in the workers table within the last `within` s."""
        def reporting() -> bool:
            seen = {w.get("app_name") for w in self.store.list_workers(within)}
            return all(self.app(n) in seen for n in names)
        wait_for(reporting, timeout, f"hosts {', '.join(names)} to report", interval=0.5)

    def submit(self, job_type: str, **params: str) -> str:
        """Submitted with the CLI on the platform host (the source is checked there, over its link)."""
        args = [a for k, v in params.items() for a in ("-p", f"{k}={v}")]
        done = self.host("a").geomill(self.env("a"), "submit", job_type, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def wait_job(self, job_id: str, timeout: float) -> Job:
        def finished() -> Job | None:
            job = self.store.get_job(job_id)
            return job if job.status.is_terminal else None
        return wait_for(finished, timeout, f"job {job_id} to finish", interval=0.3)

    def ran_on(self, task: Task) -> str:
        """The host (a, b, c, d) whose process ran the task's last attempt (executed_by_app = <app name>#<pid>)."""
        app = (task.executed_by_app or "").rpartition("#")[0]
        return next((n for n in ROLES if self.app(n) == app), app)

    def put_source(self, local: Path, key: str) -> str:
        self.s3.upload_file(str(local), self.bucket, f"bronze/{key}")
        return f"bronze://{key}"

    def versions(self, key: str) -> list[dict[str, Any]]:
        listed = self.s3.list_object_versions(Bucket=self.bucket, Prefix=key)
        return [v for v in listed.get("Versions", []) if v["Key"] == key]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Hosts a, b, c started (b with a disarmed hold before publishing), d's namespace ready; removed afterwards."""
    require_netns()
    ensure_postgres()
    s3_env = ensure_s3()
    root = tmp_path_factory.mktemp("hosts")
    with fresh_database(NAME) as db_url, fresh_vhost(NAME) as broker_url:
        store = PostgresStore(db_url)
        store.migrate()  # once, before four processes start
        client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name=s3_env["AWS_REGION"],
                              aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"])
        bucket = fresh_bucket(NAME)
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        net = Network(root)
        try:
            for name in ROLES:
                net.add_host(name)
            c = Cluster(net, store, client, bucket, db_url, broker_url)
            # b holds at most once, and only once the partition test arms it by deleting the file (see faults.py)
            fired = net.hosts["b"].data_dir / "fault-fired"
            fired.touch()
            c.start("a")
            c.start("b", fault_point="before_publish", fault_once=fired, fault_hold_seconds=HOLD)
            c.start("c", vector_chunk_rows=20)  # a job parameter may not go below 1,000 rows a chunk
            c.wait_reporting("a", "b", "c")
            yield c
        finally:
            net.close()
            store.close()


def _reachable(host: Host, cluster: Cluster, address: str) -> bool:
    probe = f"import socket; h, p = {address!r}.rsplit(':', 1); socket.create_connection((h, int(p)), timeout=2)"
    return host.run(cluster.env(host.name), sys.executable, "-c", probe).returncode == 0


def test_a_host_reaches_the_services_only_through_its_own_link(cluster: Cluster) -> None:
    b = cluster.host("b")
    for service in ("postgres", "rabbitmq", "s3"):
        assert _reachable(b, cluster, b.address(service)), service
        port = {"postgres": 5432, "rabbitmq": 5672, "s3": 5000}[service]
        assert not _reachable(b, cluster, f"127.0.0.1:{port}"), f"{service} on the host's own loopback"
    assert not _reachable(b, cluster, cluster.host("c").address("postgres")), "another host's link"


def test_a_raster_job_from_s3_runs_on_the_raster_host_and_publishes_its_cog_in_the_bucket(cluster: Cluster) -> None:
    """Class of input: a striped RGB GeoTIFF (not a COG) in the S3 bronze zone, COG into the S3 silver zone."""
    source = cluster.put_source(raster("RGB.byte.tif"), "scenes/rgb.tif")
    job = cluster.wait_job(cluster.submit("process_raster", source=source), timeout=90)
    assert job.status.value == "completed", job.error
    assert job.result is not None
    [out] = job.result["outputs"]
    assert out["valid"] is True and out["cog_path"].startswith(f"s3://{cluster.bucket}/silver/")
    key = out["cog_path"].removeprefix(f"s3://{cluster.bucket}/")
    head = cluster.s3.head_object(Bucket=cluster.bucket, Key=key)
    assert head["ContentLength"] == out["size_bytes"] > 0
    tasks = cluster.store.list_tasks(job.job_id)
    assert {t.task_type: cluster.ran_on(t) for t in tasks} == {
        "raster.validate": "b", "raster.create_cog": "b", "stac.create_item": "b"}
    assert not list(cluster.host("a").data_dir.rglob("*.tif")), "the platform host touched a raster"


def test_a_vector_job_from_s3_loads_into_postgis_on_the_vector_host(cluster: Cluster, tmp_path: Path) -> None:
    """Class of input: a zipped shapefile (67 polygons, EPSG:4326) in the S3 bronze zone, loaded in chunks of 20
    rows (the vector host's GEOMILL_VECTOR_CHUNK_ROWS); the GeoParquet chunks go through the S3 silver zone, not
    the host's folder."""
    zipped = tmp_path / "wild.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
            zf.write(data("vector", f"coutwildrnp{ext}"), f"coutwildrnp{ext}")
    source = cluster.put_source(zipped, "parcels/wild.zip")
    job_id = cluster.submit("process_vector", source=source, table=f"{NAME}_wild")
    job = cluster.wait_job(job_id, timeout=120)
    assert job.status.value == "completed", job.error
    with psycopg.connect(cluster.db_url) as con:
        count, srid, valid = con.execute(f"SELECT count(*), min(ST_SRID(geom)), bool_and(ST_IsValid(geom)) "
                                         f"FROM geo.{NAME}_wild").fetchone() or (0, 0, False)
    assert (count, srid, valid) == (67, 4326, True)
    tasks = cluster.store.list_tasks(job.job_id)
    assert sorted(t.task_type for t in tasks) == ["vector.finalize", "vector.prepare", *["vector.upload"] * 4]
    assert {cluster.ran_on(t) for t in tasks} == {"c"}
    [prepared] = [t for t in tasks if t.task_type == "vector.prepare"]
    assert prepared.result is not None
    chunks = [c["uri"] for load in prepared.result["loads"] for c in load["chunks"]]
    assert len(chunks) == 4 and all(c.startswith("silver://vector/") for c in chunks)
    for uri in chunks:  # the upload tasks read them from the bucket
        cluster.s3.head_object(Bucket=cluster.bucket, Key=f"silver/{uri.removeprefix('silver://')}")
    assert not list(cluster.host("c").data_dir.rglob("*.parquet")), "a chunk stayed on the vector host"


def test_a_partitioned_raster_worker_is_fenced_and_its_late_cog_never_replaces_the_accepted_one(
        cluster: Cluster) -> None:
    """Class of input: a single-band shaded-relief GeoTIFF in S3; host b cut off while it holds its staged COG."""
    b, fired = cluster.host("b"), cluster.host("b").data_dir / "fault-fired"
    source = cluster.put_source(raster("shade.tif"), "scenes/shade.tif")
    fired.unlink()  # armed: b's next publish holds
    job_id = cluster.submit("process_raster", source=source)
    wait_for(lambda: "fault point before_publish: holding" in cluster.log("b"), 60, "host b to hold its COG")
    [held] = [t for t in cluster.store.list_tasks(job_id) if t.task_type == "raster.create_cog"]
    assert held.status.value == "processing" and cluster.ran_on(held) == "b" and held.attempt == 1

    cluster.start("d")
    b.link(up=False)
    try:
        job = cluster.wait_job(job_id, timeout=90)
    finally:
        b.link(up=True)
    assert job.status.value == "completed", job.error
    assert job.result is not None
    [out] = job.result["outputs"]
    key = out["cog_path"].removeprefix(f"s3://{cluster.bucket}/")
    accepted = cluster.s3.head_object(Bucket=cluster.bucket, Key=key)["ETag"]
    done = cluster.store.get_task(held.task_id)
    assert (done.status.value, done.attempt, cluster.ran_on(done)) == ("completed", 2, "d")

    # b is back: it reports again, and what it did with its attempt is in its log
    cluster.wait_reporting("b", within=1.0, timeout=60)
    wait_for(lambda: "dropping the work of a fenced attempt" in cluster.log("b"), HOLD + 20,
             "host b to finish its fenced attempt")
    versions = cluster.versions(key)
    assert [v["ETag"] for v in versions] == [accepted], versions  # one PUT: d's; b never published
    log_b = cluster.log("b")
    stopped = [line for line in log_b.splitlines() if "not renewed" in line]
    assert stopped and held.task_id in stopped[0] and "outcome is dropped" in stopped[0], log_b[-3000:]
    assert "fault point before_publish: hold over" not in log_b, "the lease watchdog did not stop the held task"
    assert not [p for p in (b.data_dir / ".staging").rglob("*") if p.is_file()], "b left its staged COG"
