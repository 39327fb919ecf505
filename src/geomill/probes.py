"""Probes for roles without the HTTP API (worker_*): `/livez` and `/readyz` on `GEOMILL_PROBE_PORT`, answered by a
standard-library server on a daemon thread of the supervisor, so orchestrators probe every role the same way.

`/livez` answers while the supervisor process runs; `/readyz` answers 200 while the database does (as the API's
`/readyz`), 503 otherwise. Anything else is a 404; nothing else is served.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from geomill.service.health import ready

if TYPE_CHECKING:
    from geomill.runtime import Runtime

log = logging.getLogger(__name__)


class ProbeServer:
    """`/livez` and `/readyz` on (host, port); `port` 0 picks a free one (tests)."""

    def __init__(self, rt: Runtime, host: str, port: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(rt))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="probes", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(rt: Runtime) -> type[BaseHTTPRequestHandler]:
    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server looks up)
            if self.path == "/livez":
                self._answer(200, "ok")
            elif self.path == "/readyz":
                ok = ready(rt)
                self._answer(200 if ok else 503, "ok" if ok else "down")
            else:
                self._answer(404, "not found")

        def _answer(self, code: int, status: str) -> None:
            body = json.dumps({"status": status}).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's signature)
            log.debug("probe %s", format % args)

    return Probe
