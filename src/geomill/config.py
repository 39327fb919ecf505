"""Settings: every one is a GEOMILL_* environment variable. Read only at entry points, then passed down."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_app_name() -> str:
    return f"geomill@{socket.gethostname()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOMILL_", extra="ignore")

    data_dir: Path = Field(Path("geomill-data"), description="SQLite file and bronze/ silver/ gold/ folders")
    database_url: str | None = Field(None, description="default: sqlite:///<data_dir>/geomill.db")
    app_name: str = Field(default_factory=_default_app_name, description="recorded as executed_by_app")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="worker processes")
    queues: list[str] = Field(
        default=[], description="explicit queues to listen to (custom role); empty: the app mode's queues. "
                                "'jobs' = orchestration events")
    app_mode: str = Field("standalone", description="role preset: standalone, platform_only, platform_raster, "
                          "platform_vector, worker_raster, worker_vector, worker_long, worker_solve, appserver")
    concurrency: dict[str, int] = Field(
        default={}, description='worker processes per queue, e.g. {"raster-tasks": 2, "vector-tasks": 8}; '
                                "empty: GEOMILL_WORKERS processes each listening to every queue of the mode")
    queue_names: dict[str, str] = Field(
        default={}, description='physical names of the logical queues, e.g. {"raster-tasks": "prod-raster"}')
    broker_url: str | None = Field(
        None, description="RabbitMQ (amqp://guest:guest@127.0.0.1:5672/): workers consume from it instead of "
                          "polling the database; unset: database-native dispatch")
    broker_republish_seconds: float = Field(
        60.0, gt=0, description="a task or event sent to the broker but still unclaimed after this is sent again")
    broker_publish_interval_seconds: float = Field(
        0.5, gt=0, description="how often each supervisor sends new work from the database to the broker")
    broker_max_deliveries: int = Field(
        10, ge=1, description="a message delivered this many times without being handled is dead-lettered")
    long_task_size_mb: float = Field(1000.0, ge=0, description="tasks whose input is larger go to long-tasks")
    long_task_minutes: float = Field(20.0, ge=0, description="tasks estimated to run longer go to long-tasks")
    cancel_grace_seconds: float = Field(10.0, ge=0, description="a cancelled job's running task is killed after")
    prefetch: int = Field(8, ge=1, le=100, description="tasks claimed per round trip while tasks are short (< 0.2 s)")
    lease_seconds: float = Field(60.0, gt=0, description="task lease; renewed by heartbeats at a third of it")
    poll_interval_seconds: float = Field(0.5, gt=0, description="longest idle wait between polls (SQLite)")
    janitor_interval_seconds: float = Field(5.0, gt=0, description="how often the reconciler runs")
    stall_grace_seconds: float = Field(10.0, ge=0, description="age before a stage at zero is re-signalled")
    event_visibility_seconds: float = Field(60.0, gt=0, description="a claimed but unhandled event returns after")
    timeout_grace_seconds: float = Field(15.0, ge=0, description="after a task's timeout, kill its process after")
    http_worker_nice: int = Field(
        5, ge=0, le=19, description="niceness added to the worker processes of a process that also serves HTTP "
                                    "(geomill serve in standalone/platform_* modes): under CPU contention the API "
                                    "answers first; 0: same priority")
    shutdown_grace_seconds: float = Field(30.0, ge=0, description="SIGTERM: running tasks get this long to finish")
    large_raster_threshold_mb: float = Field(
        2048.0, ge=0, description="process_raster: inputs larger than this are processed tiled (process_large_raster)")
    stage_source_max_mb: float = Field(
        2048.0, ge=0, description="process_raster: a source in S3/Azure up to this size is downloaded to the scratch "
                                  "space (when it has room) before the COG is written, rather than read in place "
                                  "range by range; 0: always read in place")
    vector_chunk_rows: int = Field(
        100_000, ge=1, description="process_vector: features per GeoParquet chunk / upload task (bounds memory)")
    gdal_cache_mb: int = Field(64, ge=8, description="GDAL block cache per worker process, MiB (COG writing gets no "
                               "faster with more; peak memory grows with it)")
    gdal_threads: str = Field("ALL_CPUS", description="GDAL_NUM_THREADS for COG writing")
    db_pool_size: int = Field(
        4, ge=1, description="PostgreSQL: most pooled connections per process (a waiting worker holds one more)"
    )
    db_socket_timeout_seconds: float = Field(
        30.0, gt=0, description="PostgreSQL: a connection silent this long (partition, stalled peer) is closed and "
                                "the call retried (TCP keepalive, tcp_user_timeout, a round trip's longest wait)")
    out_of_space_retry_seconds: float = Field(
        0.0, ge=0, description="a task that found its disk full (OutOfSpace): 0 fails it at once with the error "
                               "(free space, then `geomill retry`); above 0, its next attempt waits this long")
    min_free_mb: float = Field(
        512.0, ge=0, description="health: a storage zone or the SQLite database folder with less free space is "
                                 "degraded")
    sqlite_synchronous: str = Field("NORMAL", description="SQLite PRAGMA synchronous (NORMAL or FULL)")
    host: str = Field("127.0.0.1", description="HTTP API address (geomill serve)")
    port: int = Field(8000, ge=1, le=65535, description="HTTP API port")
    probe_port: int | None = Field(
        None, ge=1, le=65535, description="roles without the HTTP API (worker_*): serve /livez and /readyz on this "
                                          "port (address GEOMILL_HOST) for orchestrators; unset: no probe server")
    http_processes: int = Field(
        1, ge=1, le=64, description="processes serving the HTTP API on one socket (geomill serve): more than one "
                                    "lets bursts of requests use more than one CPU")
    http_keepalive_seconds: float = Field(
        75.0, gt=0, le=3600, description="an idle keep-alive HTTP connection is closed after this long. Longer than "
        "the idle timeout of the client or load balancer in front (AWS ALB: 60 s), or a request it sends just as "
        "the server closes the connection fails (uvicorn's own default is 5 s)")
    auth_disabled: bool = Field(False, description="no API keys needed: local use only; /api/health says so")
    api_key_cache_seconds: float = Field(
        5.0, ge=0, description="an API process remembers a key lookup this long: a revoked key stops working "
                               "within this delay (0: look up every request)")
    debug_endpoints: bool = Field(False, description="enable /api/debug/* and /api/dead-letters (admin only)")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body")
    source_roots: list[str] = Field(default=[], description="folders or cloud prefixes (s3://bucket/, az://container/) "
                                    "HTTP-submitted file parameters may name (besides storage zones); empty: the data "
                                    "folder's bronze/ zone only. The SQLite state database is never nameable")
    bronze_url: str | None = Field(None, description="base of the bronze zone (bronze://): a folder, s3://bucket/prefix/ "
                                   "or az://container/prefix/; default <data_dir>/bronze")
    silver_url: str | None = Field(None, description="base of the silver zone (products): default <data_dir>/silver")
    gold_url: str | None = Field(None, description="base of the gold zone: default <data_dir>/gold")
    silver_public_url: str | None = Field(
        None, description="an https base that serves the silver zone: STAC asset hrefs of remote products use it "
                          "instead of the s3:// or az:// URI")
    signed_url_seconds: int | None = Field(
        None, ge=1, le=604_800, description="set: STAC asset hrefs and MosaicJSON paths of objects in S3 or Azure "
                                            "(without a public base URL) are presigned https URLs valid this long "
                                            "(S3: at most 7 days; Azure: needs the account key); unset: s3:// and "
                                            "az:// URIs")
    public_url: str | None = Field(
        None, description="the API's external base URL (https://geo.example.org/geo): status URLs and redirects "
                          "are built from it, never from the request's Host header; unset: relative URLs")
    ogc_sync_seconds: float = Field(
        10.0, ge=0, le=300, description="OGC API - Processes: how long an execute asked to respond synchronously "
                                        "(Prefer: respond-sync) waits for its job; longer jobs answer as async")
    drill_jobs: bool = Field(False, description="enable the drill job types (fanout: tests, chaos drills, "
                             "benchmarks); off, they are unknown to every face")
    contracts_dir: Path | None = Field(
        None, description="a folder of compute contracts (<definition>/<version>/ with inputs.schema.json, "
                                "outputs.schema.json, manifest.json) besides the ones geomill ships (docs/contracts.md)")
    appserver_url: str | None = Field(
        None, description="base URL of an AppServer (http://solver:8080): solve tasks call its "
                          "POST /gh/{definition}:{version}/solve; unset: solvers run in the worker process")
    appserver_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="solve tasks: longest wait to connect to the AppServer (the read timeout is the "
                               "contract's own timeout plus 5 s)")
    log_level: str = Field("WARNING")
    log_json: bool = Field(False, description="JSON log lines (for services)")
    plugins: list[str] = Field(default=[], description="extra modules with a register(registry) function")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("source_roots", mode="before")
    @classmethod
    def _roots(cls, v: object) -> object:
        """Local roots (str or Path) made absolute; cloud prefixes (a scheme) kept as written."""
        if not isinstance(v, list):
            return v
        return [str(r) if "://" in str(r) else str(Path(r).expanduser().resolve()) for r in v]

    def zone_urls(self) -> dict[str, str | None]:
        return {"bronze": self.bronze_url, "silver": self.silver_url, "gold": self.gold_url}

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'geomill.db'}"

    @property
    def heartbeat_seconds(self) -> float:
        return max(self.lease_seconds / 3.0, 0.05)
