"""Operations commands: serve (roles), worker, dead-letters, db upgrade."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated

import typer

from geomill.catalog.base import is_postgres
from geomill.cli import views
from geomill.cli.common import EXIT_INVALID, AsJson, DataDir, Processes, app, err, fail, load_settings, out, refuse
from geomill.contracts import load_contracts
from geomill.domain import GeomillError
from geomill.logs import setup_logging
from geomill.roles import AppMode, process_layout, resolve_role
from geomill.runtime import Runtime
from geomill.service import keys as api_keys
from geomill.service import listing
from geomill.service.health import health_document
from geomill.worker.runner import run_pool

if TYPE_CHECKING:
    from geomill.probes import ProbeServer

Mode = Annotated[str | None, typer.Option("--mode", help="standalone, platform_only, platform_raster, "
                                          "platform_vector, worker_raster, worker_vector, worker_long, worker_solve, appserver "
                                          "[GEOMILL_APP_MODE]")]
Queues = Annotated[str | None, typer.Option("--queues", help="explicit comma-separated queues (custom role)")]
Concurrency = Annotated[str | None, typer.Option(
    "--concurrency", help="processes per queue, e.g. raster-tasks=2,vector-tasks=8 [GEOMILL_CONCURRENCY]")]


def _parse_concurrency(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    pairs = {}
    for item in text.split(","):
        queue, _, n = item.partition("=")
        if not n.strip().isdigit() or int(n) < 1:
            raise GeomillError(f"--concurrency {item!r}: expected queue=N with N >= 1")
        pairs[queue.strip()] = int(n)
    return pairs


Host = Annotated[str | None, typer.Option("--host", help="HTTP address [GEOMILL_HOST; 127.0.0.1]")]
Port = Annotated[int | None, typer.Option("--port", help="HTTP port [GEOMILL_PORT; 8000]")]
NoHttp = Annotated[bool, typer.Option("--no-http", envvar="GEOMILL_NO_HTTP",
                                      help="no HTTP API even in an API-bearing mode")]
HttpProcesses = Annotated[int | None, typer.Option(
    "--http-processes", help="processes serving the HTTP API on one socket [GEOMILL_HTTP_PROCESSES; 1]")]


@app.command()
def serve(
    mode: Mode = None, queues: Queues = None, concurrency: Concurrency = None, processes: Processes = None,
    host: Host = None, port: Port = None, no_http: NoHttp = False, http_processes: HttpProcesses = None,
    data_dir: DataDir = None,
) -> None:
    """Run this process in a role until SIGTERM/Ctrl-C (drains: running tasks finish first). API-bearing modes
    (standalone, platform_*) also serve the HTTP API."""
    try:
        settings = load_settings(data_dir, workers=processes, app_mode=mode, host=host, port=port,
                                 http_processes=http_processes, concurrency=_parse_concurrency(concurrency))
        explicit = [q.strip() for q in queues.split(",") if q.strip()] if queues else settings.queues
        role = resolve_role(settings.app_mode, explicit or None)
        if role.mode is AppMode.APPSERVER:  # stateless: no database, no queues
            load_contracts(settings.contracts_dir)  # a broken contract stops the start, with its path
        else:
            rt = Runtime.open(settings)
            rt.contracts  # noqa: B018 - loaded now: a broken contract stops the start, not a request or a task
    except GeomillError as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    if role.mode is AppMode.APPSERVER:
        from geomill.serve import serve_appserver

        setup_logging(settings.log_level, settings.log_json or "GEOMILL_LOG_JSON" not in os.environ)
        serve_appserver(settings, err.print)
        return
    if "GEOMILL_LOG_JSON" not in os.environ:  # services log JSON lines unless told otherwise
        settings = settings.model_copy(update={"log_json": True})
        rt.settings = settings
        setup_logging(settings.log_level, True)
    layout = process_layout(role, settings)
    info = {"mode": str(role.mode), "has_http": role.has_http and not no_http}
    err.print(f"geomill serve: mode {role.mode}, app {settings.app_name}, {len(layout)} worker process(es): "
              + "; ".join(",".join(q) for q in layout))
    if role.has_http and not no_http:
        from geomill.serve import serve_http  # the API and its dependencies load only in an API-bearing process

        serve_http(rt, role, layout, info, err.print)
        return
    probes = _start_probes(rt)
    try:
        pool = run_pool(rt, layout, info=info)
    finally:
        if probes is not None:
            probes.stop()
    err.print(f"stopped ({pool.restarts} worker restart(s))")


def _start_probes(rt: Runtime) -> ProbeServer | None:
    """`/livez` and `/readyz` for a role without the HTTP API, when GEOMILL_PROBE_PORT is set."""
    s = rt.settings
    if s.probe_port is None:
        return None
    from geomill.probes import ProbeServer  # http.server loads only in a process that serves probes

    err.print(f"probes (/livez, /readyz) on http://{s.host}:{s.probe_port}")
    return ProbeServer(rt, s.host, s.probe_port).start()


@app.command()
def worker(
    processes: Processes = None, queues: Queues = None, concurrency: Concurrency = None, data_dir: DataDir = None,
) -> None:
    """Process queued work until stopped, without HTTP: the standalone role (or the given queues)."""
    serve(mode=None, queues=queues, concurrency=concurrency, processes=processes, host=None, port=None,
          no_http=True, data_dir=data_dir)


@app.command("dead-letters")
def dead_letters(limit: Annotated[int, typer.Option(min=1, max=listing.MAX_PAGE)] = 50, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Work that could not be processed at all (unknown task type, undecodable message), newest first."""
    rt = Runtime.open(load_settings(data_dir))
    docs = listing.dead_letters(rt.store, limit)
    if as_json:
        views.print_json(docs)
    else:
        out.print(views.dead_letters_table(docs))


db = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db, name="db")


@db.command("upgrade")
def db_upgrade(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Apply the numbered migrations not yet applied (also done on every start); on PostgreSQL, install or
    migrate pgSTAC too (else done the first time a job writes to the catalog)."""
    settings = load_settings(data_dir)
    rt = Runtime.open(settings)
    version = rt.store.schema_version()
    url = settings.resolved_database_url
    pgstac = None
    if is_postgres(url):
        from geomill.catalog.pgstac import ensure_pgstac

        pgstac = ensure_pgstac(url)
    if as_json:
        views.print_json({"database": _redacted(url), "schema_version": version, "pgstac_version": pgstac})
    else:
        out.print(f"{_redacted(url)}: schema version {version}" + (f", pgSTAC {pgstac}" if pgstac else ""))


def _redacted(url: str) -> str:
    """The URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url


keys = typer.Typer(help="API keys for the HTTP API (stored hashed; the secret is shown once).", no_args_is_help=True)
app.add_typer(keys, name="api-key")


@keys.command("create")
def api_key_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key")],
    scopes: Annotated[str, typer.Option(help="comma-separated: read, submit, admin")] = "read,submit",
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Create a key; prints its secret once."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        key_id, secret = api_keys.create_key(rt.store, name, [s.strip() for s in scopes.split(",") if s.strip()])
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({"key_id": key_id, "name": name, "scopes": scopes.split(","), "secret": secret})
    else:
        out.print(f"key {key_id} ({name}, scopes {scopes}); send it as X-API-Key. It is not shown again:")
        print(secret)


@keys.command("revoke")
def api_key_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key (requests with it then get 401)."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        api_keys.revoke_key(rt.store, key_id)
    except GeomillError as exc:
        raise refuse(exc) from None
    out.print(f"key {key_id} revoked")


@keys.command("list")
def api_key_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Keys with their scopes and state (never their secrets)."""
    rt = Runtime.open(load_settings(data_dir))
    docs = api_keys.list_keys(rt.store)
    if as_json:
        views.print_json(docs)
        return
    for d in docs:
        state = f"revoked {d['revoked_at']:%Y-%m-%d}" if d["revoked_at"] else "active"
        out.print(f"{d['key_id']}  {d['name']}  {','.join(d['scopes'])}  {state}")


@app.command()
def health(mode: Mode = None, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Database, storage, dispatch (RabbitMQ: each queue's depth and consumers), live workers; exit 1 when a
    required component is down."""
    settings = load_settings(data_dir, app_mode=mode)
    rt = Runtime.open(settings)
    doc, down = health_document(rt, resolve_role(settings.app_mode, settings.queues or None), has_http=False)
    if as_json:
        views.print_json(doc)
    else:
        out.print(f"overall: {views.styled(doc['status']) if doc['status'] != 'ok' else '[green]ok[/]'}")
        for name, comp in doc["components"].items():
            detail = {k: v for k, v in comp.items() if k != "status"}
            out.print(f"  {name:9} {comp['status']:9} {json.dumps(detail, default=str)[:200]}")
            for zone, state in comp.get("zones", {}).items():  # each remote zone's probe, in full
                out.print(f"    {zone:7} {state['status']:5} {state['uri']}  {state.get('error', '')}".rstrip())
    raise typer.Exit(1 if down else 0)
