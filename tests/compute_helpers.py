"""Helpers for the compute-contract tests: the seed's sitefit request, how a placement puts the house, and stand-in
AppServers that are not geomill (a Python standard-library server with scripted answers, a Node.js server)."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from shapely import affinity
from shapely.geometry import Polygon

from procs import wait_for
from services import unavailable

X0, Y0 = -742_000.0, -1_043_000.0  # EPSG:5514 (S-JTSK / Krovak East North) metres, south of Prague
SAMPLE_INPUTS: dict[str, Any] = {  # the seed's sample: a 20 x 30 m parcel, a 10 x 8 m house, seed 999
    "crs": "EPSG:5514",
    "parcel": {"type": "Polygon", "coordinates": [[[X0, Y0], [X0 + 20, Y0], [X0 + 20, Y0 + 30], [X0, Y0 + 30],
                                                   [X0, Y0]]]},
    "house": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 8], [0, 8], [0, 0]]]},
    "seed": 999,
}
STANDINS = Path(__file__).parent / "standins"


def sample_request(**inputs: Any) -> dict[str, Any]:
    """A /jobs/run body for sitefit 1.0.0: the seed's sample inputs updated with `inputs`."""
    return {"app_id": "h23-tests", "definition": "sitefit", "version": "1.0.0",
            "inputs": {**copy.deepcopy(SAMPLE_INPUTS), **inputs}}


def polygon(doc: dict[str, Any]) -> Polygon:
    rings = doc["coordinates"]
    return Polygon(rings[0], rings[1:])


def footprint(house: Polygon, placement: dict[str, Any]) -> Polygon:
    """The house where a placement puts it, as docs/contracts.md defines it: rotated about (0, 0), translated."""
    t = placement["transform"]
    assert t["rotation"]["axis"] == "z"
    rotated = affinity.rotate(house, t["rotation"]["value"], origin=(0.0, 0.0))
    return affinity.translate(rotated, t["translation"]["x"], t["translation"]["y"])


VALID_OUTPUTS = {  # a correct sitefit answer for SAMPLE_INPUTS: the house turned 90 degrees, inside the parcel
    "placements": [{"id": "canned", "score": 0.5, "transform": {"rotation": {"axis": "z", "value": 90.0},
                                                                "translation": {"x": X0 + 14, "y": Y0 + 10, "z": 0}}}],
    "reason": None,
    "metadata": {"definition": "sitefit", "version": "1.0.0", "engine": {"mode": "appserver", "name": "py-standin"}},
}


class ScriptedAppServer:
    """A minimal AppServer that is not geomill (http.server): POST /gh/.../solve answers the scripted
    (status, body) pairs in turn, then the last one forever; it counts the solve calls it got."""

    def __init__(self, script: list[tuple[int, Any]]) -> None:
        self.script, self.calls = list(script), 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("content-length", 0)))
                status, body = outer.script[min(outer.calls, len(outer.script) - 1)]
                outer.calls += 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedAppServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url() -> str:
    """The URL of a port nobody listens on (bound, then released)."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def node_standin(port: int) -> Iterator[str]:
    """The Node.js stand-in AppServer on `port` (skips locally, fails in CI, without node)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        unavailable("node is not installed (the JavaScript stand-in AppServer needs it)")
    assert node is not None
    proc = subprocess.Popen([node, str(STANDINS / "sitefit_standin.js"), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url + "/ready"), 20, "the Node stand-in AppServer", interval=0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def check_placements_geojson(path: Path, outputs: dict[str, Any]) -> None:
    """The `placements.geojson` artifact: RFC 7946 (WGS 84) read with pyogrio, one feature per placement in order,
    each back in EPSG:5514 where the placement puts the house (to a centimetre: the datum shift S-JTSK <-> WGS 84 does
    not round-trip exactly, about a millimetre here)."""
    import pyogrio
    from pyproj import Transformer
    from shapely import transform

    meta = pyogrio.read_info(path)
    assert meta["crs"] == "EPSG:4326" and meta["geometry_type"] == "Polygon", meta
    frame = pyogrio.read_dataframe(path)
    assert list(frame["id"]) == [p["id"] for p in outputs["placements"]]
    back = Transformer.from_crs("EPSG:4326", SAMPLE_INPUTS["crs"], always_xy=True)
    house = polygon(SAMPLE_INPUTS["house"])
    for geom, p in zip(frame.geometry, outputs["placements"], strict=True):
        local = transform(geom, lambda xy: np.column_stack(back.transform(*xy.T)))
        assert local.hausdorff_distance(footprint(house, p)) < 0.01, p
