"""Operations commands: serve (roles), worker, dead-letters, db upgrade."""

from __future__ import annotations

from typing import Annotated

import typer

from geomill import console as views
from geomill.cli.common import EXIT_INVALID, AsJson, DataDir, Processes, app, err, fail, load_settings, out
from geomill.domain import GeomillError
from geomill.runtime import Runtime
from geomill.worker.roles import process_layout, resolve_role
from geomill.worker.runner import run_pool

Mode = Annotated[str | None, typer.Option("--mode", help="standalone, platform_only, platform_raster, "
                                          "platform_vector, worker_raster, worker_vector, worker_long "
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


@app.command()
def serve(
    mode: Mode = None, queues: Queues = None, concurrency: Concurrency = None, processes: Processes = None,
    data_dir: DataDir = None,
) -> None:
    """Run this process in a role until SIGTERM/Ctrl-C (drains: running tasks finish first)."""
    try:
        settings = load_settings(data_dir, workers=processes, app_mode=mode,
                                 concurrency=_parse_concurrency(concurrency))
        explicit = [q.strip() for q in queues.split(",") if q.strip()] if queues else settings.queues
        role = resolve_role(settings.app_mode, explicit or None)
        rt = Runtime.open(settings)
    except GeomillError as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    layout = process_layout(role, settings)
    err.print(f"geomill serve: mode {role.mode}, app {settings.app_name}, {len(layout)} worker process(es): "
              + "; ".join(",".join(q) for q in layout))
    pool = run_pool(rt, layout)
    err.print(f"stopped ({pool.restarts} worker restart(s))")


@app.command()
def worker(
    processes: Processes = None, queues: Queues = None, concurrency: Concurrency = None, data_dir: DataDir = None,
) -> None:
    """Process queued work until stopped: `serve` in the standalone role (or the given queues)."""
    serve(mode=None, queues=queues, concurrency=concurrency, processes=processes, data_dir=data_dir)


@app.command("dead-letters")
def dead_letters(limit: int = 50, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Work that could not be processed at all (unknown task type, undecodable message), newest first."""
    rt = Runtime.open(load_settings(data_dir))
    docs = rt.store.list_dead_letters(limit)
    if as_json:
        views.print_json(docs)
    else:
        out.print(views.dead_letters_table(docs))


db = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db, name="db")


@db.command("upgrade")
def db_upgrade(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Apply the numbered migrations not yet applied (also done on every start)."""
    settings = load_settings(data_dir)
    rt = Runtime.open(settings)
    version = rt.store.schema_version()
    if as_json:
        views.print_json({"database": _redacted(settings.resolved_database_url), "schema_version": version})
    else:
        out.print(f"{_redacted(settings.resolved_database_url)}: schema version {version}")


def _redacted(url: str) -> str:
    """The URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
