#!/usr/bin/env python3
"""Container health check: GET /livez of this container's geomill process; exit 0 when it answers 200, else 1.

API-bearing modes (standalone, platform_*) answer on GEOMILL_PORT, unless GEOMILL_NO_HTTP is set; the other roles
(worker_*) answer on the probe server's GEOMILL_PROBE_PORT. Standard library only: it runs in a fresh interpreter
every interval, so it must start fast and import nothing of geomill.
"""

from __future__ import annotations

import os
import sys
import urllib.request

HTTP_MODES = {"standalone", "platform_only", "platform_raster", "platform_vector"}
TRUE = {"1", "true", "yes", "on"}


def probe_url(env: dict[str, str]) -> str | None:
    """Where this container's process answers /livez, or None when it serves no HTTP at all."""
    mode = env.get("GEOMILL_APP_MODE", "standalone")
    serves_api = mode in HTTP_MODES and env.get("GEOMILL_NO_HTTP", "").lower() not in TRUE
    port = env.get("GEOMILL_PORT", "8000") if serves_api else env.get("GEOMILL_PROBE_PORT")
    return f"http://127.0.0.1:{port}/livez" if port else None


def main() -> int:
    url = probe_url(dict(os.environ))
    if url is None:
        print("no HTTP API and no GEOMILL_PROBE_PORT: nothing to probe", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 (a fixed loopback URL)
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
