"""`geomill serve` with HTTP: the entry module that composes the API and the worker pool in one process (so neither
the api package imports worker nor the CLI imports api)."""

from __future__ import annotations

import signal
from collections.abc import Callable

from geomill.api import create_app
from geomill.api.server import HttpProcesses, uvicorn_config
from geomill.config import Settings
from geomill.roles import Role
from geomill.runtime import Runtime
from geomill.worker.runner import BackgroundPool


def serve_http(rt: Runtime, role: Role, layout: list[tuple[str, ...]], info: dict[str, object],
               say: Callable[[str], None]) -> None:
    """uvicorn in the main thread (it owns the signals); the worker pool is supervised from a thread and drained
    when the server shuts down. With `http_processes` > 1 the extra HTTP processes accept on the same socket."""
    import uvicorn

    s = rt.settings
    pool = BackgroundPool(rt, layout, info)

    def started(_: Runtime) -> None:
        pool.start()
        extra.start()

    def stopping(_: Runtime) -> None:
        extra.stop()
        pool.stop()

    config = uvicorn_config(create_app(s, rt, role, on_startup=started, on_shutdown=stopping), s)
    sock = config.bind_socket()
    extra = HttpProcesses(s, role, sock, s.http_processes - 1)
    if s.auth_disabled:
        say("[yellow]warning:[/] GEOMILL_AUTH_DISABLED=true: the API accepts requests without a key")
    say(f"HTTP API on http://{s.host}:{s.port} (docs: /docs), {s.http_processes} HTTP process(es)")
    # uvicorn re-raises the signal that stopped it once it has shut down; absorb it, so a drained stop exits 0
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_appserver(settings: Settings, say: Callable[[str], None]) -> None:
    """`geomill serve --mode appserver`: the contracts' solvers over HTTP (no database, no worker pool)."""
    import uvicorn

    from geomill.appserver import create_appserver
    from geomill.contracts import load_contracts

    app = create_appserver(lambda: load_contracts(settings.contracts_dir))
    say(f"AppServer on http://{settings.host}:{settings.port} (POST /gh/{{definition}}:{{version}}/solve)")
    uvicorn.Server(uvicorn_config(app, settings)).run()
