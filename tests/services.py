"""The real services integration tests use, made ready on demand: PostgreSQL 15 (+ PostGIS) on 127.0.0.1:5432.

A missing service skips the test locally but fails it when ``CI`` is set (a CI run must not pass by skipping).
``scripts/services.sh`` does the same set-up from the shell (``scripts/test.sh`` runs it before pytest).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
POSTGIS_PACKAGE = "postgresql-15-postgis-3"

_problem: str | None = None  # what is wrong with the services ("" = nothing); checked once per test session


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a missing service or sample fails the run)")
    pytest.skip(reason)


def postgres_up(timeout: float = 2.0) -> bool:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error:
        return False
    return True


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _start_postgres() -> str:
    """Start the local cluster; returns what went wrong, or an empty string."""
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    if not versions:
        return "PostgreSQL is not installed (no /etc/postgresql); run scripts/services.sh"
    try:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot start PostgreSQL: {exc}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if postgres_up():
            return ""
        time.sleep(0.5)
    return f"PostgreSQL on {PG_HOST}:{PG_PORT} did not come up after pg_ctlcluster start"


def _ensure_postgis() -> str:
    """Install PostGIS if missing (the vector work needs it); returns what went wrong, or an empty string."""
    try:
        if _run(["dpkg", "-s", POSTGIS_PACKAGE], timeout=30).returncode == 0:
            return ""
        update = _run(["apt-get", "update"], timeout=300)
        install = _run(["apt-get", "install", "-y", POSTGIS_PACKAGE], timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot install {POSTGIS_PACKAGE}: {exc}"
    if install.returncode != 0:
        return f"cannot install {POSTGIS_PACKAGE}: {(update.stderr + install.stderr).strip()[-500:]}"
    return ""


def ensure_postgres() -> None:
    """PostgreSQL reachable on 127.0.0.1:5432 with PostGIS installed, or skip (fail in CI)."""
    global _problem
    if _problem is None:  # first call of the session: check, start, install
        _problem = ("" if postgres_up() else _start_postgres()) or _ensure_postgis()
    if _problem:
        unavailable(_problem)


def database_url(name: str) -> str:
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


@contextmanager
def fresh_database(prefix: str = "geomill_test") -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards (its sessions terminated first)."""
    ensure_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        drop_database(name)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_sessions(url: str) -> int:
    """Kill every session connected to the database of `url` (what a server restart does to clients)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
    return len(rows)


# RabbitMQ on 127.0.0.1:5672 (guest/guest), for the broker dispatch tests. Each test gets its own virtual host.
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
_rabbit_problem: str | None = None


def rabbitmq_up(vhost: str = "/") -> bool:
    import pika
    import pika.exceptions

    params = pika.ConnectionParameters(RABBIT_HOST, RABBIT_PORT, vhost, pika.PlainCredentials("guest", "guest"),
                                       connection_attempts=1, socket_timeout=2)
    try:
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError):
        return False
    return True


def rabbitmqctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run(["rabbitmqctl", *args], timeout=timeout)


def _start_rabbitmq() -> str:
    try:
        _run(["rabbitmq-server", "-detached"], timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot start RabbitMQ: {exc}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if rabbitmq_up():
            return ""
        time.sleep(1.0)
    return f"RabbitMQ on {RABBIT_HOST}:{RABBIT_PORT} did not come up after rabbitmq-server -detached"


def ensure_rabbitmq() -> None:
    """RabbitMQ reachable on 127.0.0.1:5672 (started if down), or skip (fail in CI)."""
    global _rabbit_problem
    if _rabbit_problem is None:
        _rabbit_problem = "" if rabbitmq_up() else _start_rabbitmq()
    if _rabbit_problem:
        unavailable(_rabbit_problem)


def wait_rabbitmq_app(timeout: float = 60) -> None:
    """After `rabbitmqctl start_app`: until clients can connect again."""
    deadline = time.monotonic() + timeout
    while not rabbitmq_up():
        if time.monotonic() > deadline:
            raise AssertionError("RabbitMQ did not come back")
        time.sleep(0.5)


@contextmanager
def fresh_vhost(prefix: str = "geomill_test") -> Iterator[str]:
    """A new RabbitMQ virtual host for one test (its queues start empty): the broker URL; deleted afterwards."""
    ensure_rabbitmq()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        done = rabbitmqctl(*args)
        assert done.returncode == 0, done.stderr
    try:
        yield f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


def pg_ctl(action: str) -> None:
    """Stop (fast) or start the local PostgreSQL cluster, for restart drills (the server is shared: callers run last or
    start it again in a finally). Starting a cluster someone else already started is not an error."""
    version = sorted(p.name for p in Path("/etc/postgresql").glob("*"))[-1]
    done = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, "--", "-m", "fast"]
                          if action == "stop" else
                          ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                          check=False, timeout=120, capture_output=True, text=True)
    if done.returncode and not (action == "start" and "already running" in done.stderr + done.stdout):
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)


# Object storage emulators: moto's S3 server on 127.0.0.1:5000 and Azurite (Azure Blob) on 127.0.0.1:10000, each
# started in the background when its port is closed (and Azurite installed with npm when missing).
S3_HOST, S3_PORT = "127.0.0.1", 5000
AZURITE_HOST, AZURITE_PORT = "127.0.0.1", 10000
AZURITE_ACCOUNT = "devstoreaccount1"  # Azurite's well-known development account (public, documented by Microsoft)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_ENDPOINT = f"http://{AZURITE_HOST}:{AZURITE_PORT}/{AZURITE_ACCOUNT}"
AZURITE_CONNECTION_STRING = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                             f"BlobEndpoint={AZURITE_ENDPOINT};")
S3_ENV = {"AWS_ENDPOINT_URL": f"http://{S3_HOST}:{S3_PORT}", "AWS_ACCESS_KEY_ID": "testing-key-id",
          "AWS_SECRET_ACCESS_KEY": "testing-secret-key", "AWS_REGION": "us-east-1"}
AZURE_ENV = {"AZURE_STORAGE_CONNECTION_STRING": AZURITE_CONNECTION_STRING}
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geomill"
_emulator_problem: dict[str, str] = {}


def port_open(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def _wait_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.25)
    return False


def _background(cmd: list[str], log: Path) -> None:
    """Start `cmd` detached from the test session (it outlives it, like the database server)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _start_moto() -> str:
    import sys

    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        return f"moto's server is not installed ({server}); install the dev extras (moto[server])"
    _background([str(server), "-H", S3_HOST, "-p", str(S3_PORT)], CACHE / "moto.log")
    return "" if _wait_port(S3_HOST, S3_PORT, 30) else f"moto_server on {S3_HOST}:{S3_PORT} did not come up"


def _start_azurite() -> str:
    prefix = CACHE / "azurite"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        try:
            done = _run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "azurite@3"], 600)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot install Azurite with npm: {exc}"
        if done.returncode != 0 or not binary.exists():
            return f"cannot install Azurite with npm: {done.stderr.strip()[-500:]}"
    _background([str(binary), "--blobHost", AZURITE_HOST, "--blobPort", str(AZURITE_PORT),
                 "--location", str(CACHE / "azurite-data"), "--silent", "--skipApiVersionCheck", "--loose"],
                CACHE / "azurite.log")
    return "" if _wait_port(AZURITE_HOST, AZURITE_PORT, 30) else f"Azurite on {AZURITE_HOST}:{AZURITE_PORT} did not come up"


def ensure_s3() -> dict[str, str]:
    """moto's S3 server reachable (started if down): the AWS_* environment that reaches it. Skip (fail in CI)."""
    if "s3" not in _emulator_problem:
        _emulator_problem["s3"] = "" if port_open(S3_HOST, S3_PORT) else _start_moto()
    if _emulator_problem["s3"]:
        unavailable(_emulator_problem["s3"])
    return dict(S3_ENV)


def ensure_azurite() -> dict[str, str]:
    """Azurite reachable (installed and started if needed): the AZURE_* environment that reaches it."""
    if "az" not in _emulator_problem:
        _emulator_problem["az"] = "" if port_open(AZURITE_HOST, AZURITE_PORT) else _start_azurite()
    if _emulator_problem["az"]:
        unavailable(_emulator_problem["az"])
    return dict(AZURE_ENV)


def fresh_bucket(prefix: str = "geomill-test") -> str:
    """A new, empty S3 bucket on moto (ensure_s3 first)."""
    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"], aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"], region_name=S3_ENV["AWS_REGION"])
    client.create_bucket(Bucket=name)
    return name


def fresh_container(prefix: str = "geomill-test") -> str:
    """A new, empty Azure Blob container on Azurite (ensure_azurite first)."""
    from azure.storage.blob import BlobServiceClient

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING).create_container(name)
    return name


@contextmanager
def moto_with_auth(free_actions: int) -> Iterator[str]:
    """A private moto S3 server that checks credentials after its first `free_actions` requests (moto's
    INITIAL_NO_AUTH_ACTION_COUNT): its endpoint URL. Stopped afterwards."""
    import socket
    import sys

    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        unavailable(f"moto's server is not installed ({server})")
    with socket.socket() as probe:  # a free loopback port
        probe.bind((S3_HOST, 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(free_actions))
    proc = subprocess.Popen([str(server), "-H", S3_HOST, "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        if not _wait_port(S3_HOST, port, 30):
            unavailable(f"moto_server with authentication on {S3_HOST}:{port} did not come up")
        yield f"http://{S3_HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def remote_zones(monkeypatch: pytest.MonkeyPatch, backend: str, prefix: str, *,
                 remote_bronze: bool = True) -> tuple[dict[str, str], str]:
    """Zone settings in a fresh bucket (``backend`` "s3", moto) or container ("az", Azurite), the emulator's
    credentials set in the environment through `monkeypatch`: ({"silver_url": …, "bronze_url": …}, bucket)."""
    env = ensure_s3() if backend == "s3" else ensure_azurite()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = fresh_bucket(prefix) if backend == "s3" else fresh_container(prefix)
    zones = {"silver_url": f"{backend}://{bucket}/silver/"}
    if remote_bronze:
        zones["bronze_url"] = f"{backend}://{bucket}/bronze/"
    return zones, bucket
