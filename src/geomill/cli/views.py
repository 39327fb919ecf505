"""Rich rendering for the CLI: live job progress, status views, tables. Library code never prints."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from geomill.engine.report import job_report
from geomill.runtime import Runtime

STATUS_STYLE = {
    "queued": "yellow", "processing": "cyan", "completed": "green", "completed_with_errors": "dark_orange",
    "failed": "red", "cancelled": "magenta",
}


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def print_json(doc: Any) -> None:
    """One JSON document on stdout, for scripts."""
    print(json.dumps(doc, indent=2, default=str))


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(n)


class JobProgress:
    """One bar per job: its current stage, tasks done of total, and the job's status."""

    def __init__(self, runtime: Runtime, job_ids: Sequence[str], console: Console) -> None:
        self.rt = runtime
        self.job_ids = list(job_ids)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}"), TextColumn("{task.fields[stage]}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
        )
        self.bars: dict[str, TaskID] = {}
        for job_id in self.job_ids:
            label = self._label(job_id)
            self.bars[job_id] = self.progress.add_task("", total=None, label=label, stage="", status="")
        self.live = Live(self.progress, console=console, refresh_per_second=8, transient=False)

    def _label(self, job_id: str) -> str:
        job = self.rt.store.get_job(job_id)
        source = job.params.get("source")
        name = str(source).rsplit("/", 1)[-1] if source else job.job_type
        return f"{job.job_type} {name} [dim]{job_id[:8]}[/]"

    def update(self) -> None:
        for job_id, bar in self.bars.items():
            doc = job_report(self.rt.store, self.rt.registry, job_id)
            current = next((s for s in doc["stages"] if s.get("stage") == doc["stage"] and s.get("total") is not None),
                           None)
            stage = f"stage {doc['stage']}/{doc['stage_count']} {doc['stage_name'] or ''}"
            total = current["total"] if current else None
            done = current["done"] if current else 0
            self.progress.update(bar, total=total or 1, completed=done if total else 0,
                                 stage=stage, status=styled(doc["status"]))

    def __enter__(self) -> JobProgress:
        self.live.__enter__()
        self.update()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self.live.__exit__(None, None, None)
        self.live.console.print()


def status_view(doc: dict[str, Any]) -> Group:
    """`geomill status`: header, per-stage counts and timings, then the result or the error."""
    head = Table.grid(padding=(0, 2))
    head.add_row("job", doc["job_id"])
    head.add_row("type", doc["job_type"])
    head.add_row("status", styled(doc["status"]))
    head.add_row("stage", f"{doc['stage']}/{doc['stage_count']} {doc.get('stage_name') or ''}")
    head.add_row("created", str(doc["created_at"]))
    head.add_row("finished", str(doc["finished_at"] or "-"))
    head.add_row("seconds", str(doc["seconds"] if doc["seconds"] is not None else "-"))
    if doc.get("resubmit_of"):
        head.add_row("resubmit of", doc["resubmit_of"])
    stages = Table(title="stages", show_lines=False)
    for col in ("#", "name", "total", "queued", "processing", "completed", "failed", "progress", "seconds"):
        stages.add_column(col, justify="right" if col not in ("name",) else "left")
    for s in doc["stages"]:
        if s.get("total") is None:
            stages.add_row(str(s["stage"]), s["name"], "-", "", "", "", "", "not planned", "")
            continue
        stages.add_row(str(s["stage"]), s["name"], str(s["total"]), str(s["queued"]), str(s["processing"]),
                       str(s["completed"]), str(s["failed"]), f"{s['progress']:.0f}%", str(s["seconds"]))
    parts: list[Any] = [head, stages]
    for t in doc.get("running_tasks", [])[:5]:
        parts.append(f"running: {t['task_key']} ({t['task_type']}) on {t['target_queue']} by {t['executed_by_app']}"
                     f" attempt {t['attempt']}/{t['max_attempts']}")
    if doc.get("error"):
        parts.append(Panel(doc["error"].get("message", str(doc["error"])), title="error", border_style="red"))
    for t in doc.get("failed_tasks", [])[:5]:
        err = t.get("error") or {}
        parts.append(f"[red]failed task[/] {t['task_key']} ({t['task_type']}), attempt {t['attempt']}: "
                     f"{err.get('type')}: {err.get('message')}")
    if doc.get("result") is not None:
        parts.append(Panel(json.dumps(doc["result"], indent=2, default=str), title="result", border_style="green"))
    return Group(*parts)


def jobs_table(docs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(docs)} job(s), newest first")
    for col in ("job id", "type", "status", "stage", "created", "seconds"):
        table.add_column(col)
    for d in docs:
        table.add_row(d["job_id"][:16], d["job_type"], styled(d["status"]), f"{d['stage']}/{d['stage_count']}",
                      str(d["created_at"])[:19], str(d["seconds"] if d["seconds"] is not None else "-"))
    return table


def timeline_table(doc: dict[str, Any]) -> Table:
    """A job's timeline: one row per stage with its counts, progress and ETA."""
    eta = doc["eta_seconds"]
    table = Table(title=f"job {doc['job_id'][:16]} {doc['status']}: {100 * doc['progress']:.1f}%"
                        + (f", ETA {eta:.0f} s" if eta else ""))
    for col in ("stage", "name", "total", "queued", "running", "completed", "failed", "cancelled", "first start",
                "last finish", "progress", "ETA s"):
        table.add_column(col)
    for s in doc["stages"]:
        c = s["counts"]
        table.add_row(str(s["stage"]), s["name"], str(s["total"] if s["total"] is not None else "-"),
                      str(c["queued"]), str(c["processing"]), str(c["completed"]), str(c["failed"]),
                      str(c["cancelled"]), str(s["first_started_at"] or "-")[:19],
                      str(s["last_finished_at"] or "-")[:19], f"{100 * s['progress']:.1f}%",
                      "-" if s["eta_seconds"] is None else f"{s['eta_seconds']:.0f}")
    return table


def job_types_table(types: list[dict[str, Any]]) -> Table:
    table = Table(title="job types", show_lines=True)
    for col in ("name", "description", "stages", "parameters"):
        table.add_column(col)
    for t in types:
        props = t["parameters"].get("properties", {})
        required = set(t["parameters"].get("required", []))
        params = "\n".join(
            f"{k}{'*' if k in required else ''}: {_type_of(v)}"
            + (f" = {v['default']!r}" if "default" in v else "") for k, v in props.items()
        )
        table.add_row(t["name"], t["description"], " → ".join(s["name"] for s in t["stages"]), params)
    return table


def _type_of(prop: dict[str, Any]) -> str:
    if "type" in prop:
        return str(prop["type"])
    options = [o.get("type", "?") for o in prop.get("anyOf", [])]
    return " | ".join(options) if options else "any"


def short_path(path: str | None) -> str:
    """A path relative to the working folder when it lies inside it (tables stay readable)."""
    if not path:
        return "-"
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path


def outputs_table(results: list[dict[str, Any]]) -> Table:
    """The demo's closing table: COG path, size, STAC item path per processed raster."""
    table = Table(title="outputs")
    for col in ("source", "status", "COG", "size", "STAC item"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(r["source"], styled(r["status"]), short_path(r.get("cog_path")),
                      human_size(r.get("size_bytes")), short_path(r.get("stac_item_path")) if r.get(
                          "stac_item_path") else (r.get("error") or "-"))
    return table


def tasks_table(docs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(docs)} task(s)")
    for col in ("stage", "key", "type", "status", "attempt", "queue", "executed by", "started", "error"):
        table.add_column(col, overflow="fold")
    for d in docs:
        err = d.get("error") or {}
        table.add_row(str(d["stage"]), d["task_key"], d["task_type"], styled(d["status"]),
                      f"{d['attempt']}/{d['max_attempts']}", d["target_queue"], d["executed_by_app"] or "-",
                      str(d["execution_started_at"] or "-")[:19], err.get("message", "")[:80])
    return table


def dead_letters_table(docs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(docs)} dead letter(s)")
    for col in ("when", "source", "reason", "job", "task"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(str(d["created_at"])[:19], d["source"], d["reason"], (d.get("job_id") or "-")[:12],
                      (d.get("task_id") or "-")[:12])
    return table


def collections_table(docs: list[dict[str, Any]], backend: str) -> Table:
    table = Table(title=f"{len(docs)} collection(s) in the {backend} catalog")
    for col in ("collection", "items", "bbox (EPSG:4326)", "time span"):
        table.add_column(col)
    for d in docs:
        bbox = d.get("extent", {}).get("spatial", {}).get("bbox", [[]])[0]
        span = d.get("extent", {}).get("temporal", {}).get("interval", [[None, None]])[0]
        count = sum(1 for x in d.get("links", []) if x.get("rel") == "item")
        table.add_row(d["id"], str(count) if count else "-", ", ".join(f"{v:.4f}" for v in bbox),
                      " → ".join(str(v)[:19] for v in span))
    return table


def items_table(docs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(docs)} item(s)")
    for col in ("item", "collection", "datetime", "assets"):
        table.add_column(col)
    for d in docs:
        props = d.get("properties", {})
        when = props.get("datetime") or props.get("start_datetime") or "-"
        assets = ", ".join(f"{k}: {short_path(v.get('href'))}" for k, v in (d.get("assets") or {}).items())
        table.add_row(d["id"], str(d.get("collection", "-")), str(when)[:19], assets)
    return table
