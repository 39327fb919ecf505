"""Health: each component's state (database, storage, dispatch, workers seen, compute, role, auth) and the overall
one."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geomill.roles import MODE_QUEUES, AppMode, Role
from geomill.storage import ZONES

if TYPE_CHECKING:
    from geomill.runtime import Runtime

WORKERS_SEEN_WITHIN = 30.0
STORAGE_PROBE_SECONDS = 2.0  # each remote zone's probe: connect and answer within this, or the zone is down


def check(fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """A component's state: ok with what `fn` reports, or down with its error (a health check never raises)."""
    try:
        return {"status": "ok", **(fn() or {})}
    except Exception as exc:  # noqa: BLE001 (a health check reports failures; it never raises)
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"}


def database(rt: Runtime) -> dict[str, Any]:
    return {"backend": rt.store.dialect, "schema_version": rt.store.schema_version()}


def _database(rt: Runtime) -> dict[str, Any]:
    """The database's state and, for SQLite, the free space of its folder (a full disk fails every write)."""
    doc = database(rt)
    path = getattr(rt.store, "path", None)
    if path is None:
        return doc
    free = shutil.disk_usage(Path(path).parent).free
    low = free < _min_free_bytes(rt)
    return {**doc, "free_bytes": free, **({"status": "degraded", "low_space": True} if low else {})}


def _min_free_bytes(rt: Runtime) -> int:
    return int(rt.settings.min_free_mb * 1024 * 1024)


def _storage(rt: Runtime) -> dict[str, Any]:
    """Each local zone is writable (an empty file is made there) and has GEOMILL_MIN_FREE_MB free: an empty file
    still fits on a full disk, so the free bytes are checked too. Each remote zone is probed (one listing request
    of its base, short timeout, no retries, the zones in parallel): up or down with the reason, its base URI shown
    and never a credential. A zone that is down makes the storage down."""
    free: dict[str, int] = {}
    remote = {zone: rt.storage.zone_base(zone) for zone in ZONES if not rt.storage.zone_base(zone).is_local}
    for zone in ZONES:
        if zone in remote:
            continue
        folder = rt.storage.zone_path(zone)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-"):
            pass
        free[zone] = shutil.disk_usage(folder).free
    minimum = _min_free_bytes(rt)
    low = sorted(zone for zone, n in free.items() if n < minimum)
    doc: dict[str, Any] = {"backend": "local" if not remote else "object", "root": str(rt.storage.root),
                           "free_bytes": free, "min_free_bytes": minimum}
    if remote:
        doc["remote_zones"] = {zone: base.uri for zone, base in remote.items()}
        doc["zones"] = _probe_zones(rt, list(remote))
        down = sorted(zone for zone, state in doc["zones"].items() if state["status"] != "up")
        if down:
            return {**doc, "status": "down", "error": f"unreachable zone(s): {', '.join(down)}"}
    return {**doc, **({"status": "degraded", "low_space": low} if low else {})}


def _probe_zones(rt: Runtime, zones: list[str]) -> dict[str, dict[str, Any]]:
    """{zone: {"status": "up"|"down", "uri", "seconds"[, "error"]}}, the probes run side by side."""

    def probe(zone: str) -> dict[str, Any]:
        started = time.monotonic()
        state: dict[str, Any] = {"status": "up", "uri": rt.storage.zone_base(zone).uri}
        try:
            rt.storage.probe(zone, STORAGE_PROBE_SECONDS)
        except Exception as exc:  # noqa: BLE001 (reported; the storage's messages hold no credential)
            state.update(status="down", error=f"{type(exc).__name__}: {exc}")
        state["seconds"] = round(time.monotonic() - started, 3)
        return state

    with ThreadPoolExecutor(max_workers=len(zones)) as pool:
        return dict(zip(zones, pool.map(probe, zones), strict=True))


def _dispatch(rt: Runtime) -> dict[str, Any]:
    from geomill.dispatch import dispatch_health  # the broker's client only loads when one is configured

    return dispatch_health(rt, MODE_QUEUES[AppMode.STANDALONE], rt.settings.queue_names)


def _workers(rt: Runtime) -> dict[str, Any]:
    workers = rt.store.list_workers(WORKERS_SEEN_WITHIN)
    queues = sorted({q for w in workers for q in w.get("queues", [])})
    return {"seen_within_seconds": WORKERS_SEEN_WITHIN, "count": len(workers), "queues": queues,
            "workers": [{k: w.get(k) for k in ("worker_id", "mode", "queues", "processes", "last_seen_at")}
                        for w in workers]}


def _compute(rt: Runtime) -> dict[str, Any]:
    """The compute contracts this process knows, and where solve tasks run: in process, or on the AppServer
    (GEOMILL_APPSERVER_URL), whose /ready is asked (2 s at most); an AppServer that is not ready is degraded."""
    doc: dict[str, Any] = {"contracts": rt.contracts.keys(),
                           "solver": "appserver" if rt.settings.appserver_url else "in_process"}
    if not rt.settings.appserver_url:
        return doc
    import httpx

    url = rt.settings.appserver_url.rstrip("/")
    try:
        answer = httpx.get(f"{url}/ready", timeout=2.0)
    except httpx.TransportError as exc:
        return {**doc, "status": "degraded", "appserver_url": url, "appserver": f"unreachable: {exc}"}
    ready = answer.status_code == 200
    return {**doc, "appserver_url": url, "appserver": "ready" if ready else f"not ready ({answer.status_code})",
            **({} if ready else {"status": "degraded"})}


def health_document(rt: Runtime, role: Role, *, has_http: bool = True,
                    details: bool = True) -> tuple[dict[str, Any], bool]:
    """Every component's state and the overall status, and whether a required component is down (the database,
    the storage, and the broker when one is configured). Without `details` (anonymous HTTP callers), states only:
    no paths, host names, process ids or error messages."""
    settings = rt.settings
    components = {
        "database": check(lambda: _database(rt)),
        "storage": check(lambda: _storage(rt)),
        "dispatch": check(lambda: _dispatch(rt)),
        "workers": check(lambda: _workers(rt)),
        "compute": check(lambda: _compute(rt)),
        "app_mode": {"status": "ok", **role.describe(settings), "has_http": has_http, "pid": os.getpid()},
        "auth": {"status": "disabled" if settings.auth_disabled else "ok", "api_keys_required":
                 not settings.auth_disabled},
    }
    if components["workers"].get("count") == 0:
        components["workers"]["status"] = "degraded"
    required = ("database", "storage", "dispatch") if rt.broker is not None else ("database", "storage")
    required_down = any(components[c]["status"] == "down" for c in required)
    degraded = any(c["status"] in ("degraded", "down") for c in components.values())
    overall = "down" if required_down else ("degraded" if degraded else "ok")
    if not details:
        components = {name: {"status": c["status"]} for name, c in components.items()}
    return {"status": overall, "components": components}, required_down


def _broker_stats(rt: Runtime, names: list[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Each queue's ready messages and consumers from the broker, and the error when it cannot tell."""
    if rt.broker is None:
        return {}, None
    try:
        return dict(rt.broker.queue_stats(names)), None
    except Exception as exc:  # noqa: BLE001 (reported in the document; the database's view still answers)
        return {}, f"{type(exc).__name__}: {exc}"


def queues_document(rt: Runtime) -> dict[str, Any]:
    """Queues and workers for the console: each queue's depth from the database's `geomill_queue_depth` view
    (queued, ready, running, active) with, when RabbitMQ is configured, its ready messages and consumers there;
    each worker seen within WORKERS_SEEN_WITHIN seconds with its last heartbeat and the tasks it runs now."""
    depth = {r["queue"]: r for r in rt.store.queue_depths()}
    names = rt.settings.queue_names
    known = [names.get(q, q) for q in MODE_QUEUES[AppMode.STANDALONE]]
    physical = known + sorted(set(depth) - set(known))
    stats, broker_error = _broker_stats(rt, physical)
    queues = []
    for name in physical:
        row = depth.get(name, {})
        entry: dict[str, Any] = {"queue": name, **{k: int(row.get(k, 0)) for k in ("queued", "ready", "running",
                                                                                    "active")}}
        if name in stats:
            entry["broker_messages"] = stats[name].get("messages")
            entry["consumers"] = stats[name].get("consumers")
        queues.append(entry)
    return {"broker": rt.broker.backend if rt.broker else None, "broker_error": broker_error, "queues": queues,
            **_workers_running(rt)}


def _workers_running(rt: Runtime) -> dict[str, Any]:
    """Workers seen lately, each with the tasks its processes (``app_name#pid``) run now, and the running tasks
    of processes no recent worker report names (`unattributed`: a worker that stopped reporting)."""
    running = rt.store.running_by_app()
    workers: list[dict[str, Any]] = []
    claimed: set[str] = set()
    for w in rt.store.list_workers(WORKERS_SEEN_WITHIN):
        apps = {f"{w.get('app_name')}#{pid}" for pid in w.get("pids", [])}
        mine = [r for r in running if r["app"] in apps]
        claimed.update(r["app"] for r in mine)
        by_queue: dict[str, int] = {}
        for r in mine:
            by_queue[r["queue"]] = by_queue.get(r["queue"], 0) + r["running"]
        workers.append({"worker_id": w["worker_id"], "app_name": w.get("app_name"), "mode": w.get("mode"),
                        "queues": w.get("queues", []), "processes": w.get("processes"),
                        "started_at": w.get("started_at"), "last_seen_at": w.get("last_seen_at"),
                        "running": sum(by_queue.values()), "running_by_queue": by_queue})
    unattributed = [r for r in running if r["app"] not in claimed]
    return {"seen_within_seconds": WORKERS_SEEN_WITHIN, "workers": workers, "unattributed": unattributed}


def ready(rt: Runtime) -> bool:
    """Ready to serve: the database answers."""
    return check(lambda: database(rt))["status"] == "ok"
