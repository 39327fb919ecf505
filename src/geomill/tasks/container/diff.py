"""Task ``container.diff``: one manifest part against the ledger of what earlier syncs processed.

The part covers the key range (`after`, `upto`] (parts are in key order, so the ranges of a listing's parts tile
the whole key space). An object of a kind the sync processes (rasters; vector files and .zip archives too when the sync loads
vectors) is *new* when the ledger has no entry for its
key, *changed* when the entry's version (etag; size and mtime for a local file) differs, else *unchanged*. A ledger
entry in the range whose key is not in the part is a *deleted* object; with `remove_deleted` its STAC item, the COG
geomill made of it and its entry are removed. New and changed objects are written as JSON lines files of at most
CHANGES_PER_FILE lines (the next stage plans one task per line); memory holds one part and one ledger page.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from geomill.domain import InvalidInput
from geomill.engine.context import LedgerEntry, TaskContext
from geomill.tasks.container.kinds import RASTER, is_loadable_vector
from geomill.tasks.container.manifest import manifest_prefix
from geomill.tasks.container.models import ChangeList, DiffPartParams, DiffResult

logger = logging.getLogger(__name__)

PROCESSED_KINDS = frozenset({RASTER})
CHANGES_PER_FILE = 500  # what one sync_file task reads to find its line
LEDGER_PAGE = 1000
DELETED_SHOWN = 100


def read_lines(ctx: TaskContext, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ctx.storage.read_bytes(uri).decode("utf-8").splitlines() if line]


def _remove(ctx: TaskContext, params: DiffPartParams, entry: LedgerEntry) -> None:
    """The deleted object's item, the COG geomill made of it (not a COG catalogued in place: that was the
    object itself) and its ledger entry."""
    if entry.item_id:
        ctx.catalog.delete_item(entry.item_id, params.collection_id)
    if entry.cog_uri:
        try:
            ctx.storage.delete(entry.cog_uri)
        except InvalidInput as exc:  # its bucket went away: nothing left to delete
            logger.warning("cannot delete %s: %s", entry.cog_uri, exc, extra={"task_id": ctx.task_id})
    ctx.ledger.forget_processed(params.scope, entry.key)


def write_changes(ctx: TaskContext, part: int, lines: list[dict[str, Any]]) -> list[ChangeList]:
    """`lines` as JSON lines files of at most CHANGES_PER_FILE lines, in silver next to the manifest."""
    out = []
    for n, start in enumerate(range(0, len(lines), CHANGES_PER_FILE)):
        chunk = lines[start:start + CHANGES_PER_FILE]
        uri = f"{manifest_prefix(ctx.job_id)}changes/{part:05d}-{n:04d}.jsonl"
        ctx.storage.write_bytes(uri, "".join(json.dumps(c, separators=(",", ":")) + "\n" for c in chunk).encode())
        out.append(ChangeList(uri=uri, count=len(chunk)))
    return out


def diff_part(params: DiffPartParams, ctx: TaskContext) -> DiffResult:
    """Handler of ``container.diff``."""
    listed = read_lines(ctx, params.part_uri) if params.part_uri else []
    wanted = {line["key"]: line for line in listed if line["kind"] in PROCESSED_KINDS
              or (params.vectors and is_loadable_vector(line["key"], line["kind"]))}
    known: dict[str, str] = {}  # key -> processed version, for the part's keys only
    deleted: list[str] = []  # the first DELETED_SHOWN; `gone` counts them all
    gone = removed = 0
    after = params.after or ""
    while page := ctx.ledger.processed_range(params.scope, after, params.upto, LEDGER_PAGE):
        for entry in page:
            if entry.key in wanted:
                known[entry.key] = entry.version
                continue
            gone += 1
            if len(deleted) < DELETED_SHOWN:
                deleted.append(entry.uri)
            if params.remove_deleted:
                _remove(ctx, params, entry)
                removed += 1
        after = page[-1].key
    todo = []
    new = changed = rasters = 0
    for key, line in wanted.items():  # the part's order: key order
        if key not in known:
            new += 1
            todo.append({**line, "status": "new"})
        elif known[key] != line["version"]:
            changed += 1
            todo.append({**line, "status": "changed"})
        else:
            continue
        rasters += line["kind"] == RASTER
    changes = write_changes(ctx, params.part, todo)
    ctx.progress(1.0, f"{new} new, {changed} changed, {gone} deleted")
    return DiffResult(part=params.part, objects=len(listed), geospatial=len(wanted), rasters=rasters, new=new,
                      changed=changed,
                      unchanged=len(wanted) - new - changed, changes=changes, deleted=gone,
                      deleted_uris=deleted, removed=removed)
