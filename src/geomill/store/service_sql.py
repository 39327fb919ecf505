"""Service-side state both SQL stores share: API keys, idempotency keys, live workers, counters, metrics.

Each store mixes in `ServiceState` and provides its `_sql` statements, `_read`, `_write` (one statement in its own
transaction, returning the row count) and `_since(seconds)` (a time `seconds` ago in the store's time type).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from geomill.store.access import StatementAccess
from geomill.store.common_queries import DURATION_BUCKETS, Statements
from geomill.store.rows import ts

__all__ = ["DURATION_BUCKETS", "ServiceState"]


class ServiceState(StatementAccess):
    _sql: Statements

    def _now_param(self) -> Any:
        return self._since(0.0)

    # API keys: only a hash of the secret is stored
    def create_api_key(self, key_id: str, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        self._write(self._sql.insert_api_key, {"key_id": key_id, "name": name, "key_hash": key_hash,
                                                "scopes": ",".join(scopes), "now": self._now_param()})

    def api_key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        rows = self._read(self._sql.api_key_by_hash, {"key_hash": key_hash})
        if not rows:
            return None
        r = rows[0]
        return {"key_id": r["key_id"], "name": r["name"], "scopes": r["scopes"].split(","),
                "revoked": r["revoked_at"] is not None}

    def revoke_api_key(self, key_id: str) -> bool:
        return self._write(self._sql.revoke_api_key, {"key_id": key_id, "now": self._now_param()}) == 1

    def list_api_keys(self) -> list[dict[str, Any]]:
        return [{"key_id": r["key_id"], "name": r["name"], "scopes": r["scopes"].split(","),
                 "created_at": ts(r["created_at"]), "revoked_at": ts(r["revoked_at"])}
                for r in self._read(self._sql.api_keys)]

    # idempotency keys (the HTTP Idempotency-Key header)
    def remember_idempotency_key(self, key: str, job_id: str) -> str:
        """The job id first stored for `key` (this one, if the key is new)."""
        self._write(self._sql.insert_idempotency_key, {"key": key, "job_id": job_id, "now": self._now_param()})
        return str(self._read(self._sql.idempotency_key, {"key": key})[0]["job_id"])

    def job_for_idempotency_key(self, key: str) -> str | None:
        rows = self._read(self._sql.idempotency_key, {"key": key})
        return rows[0]["job_id"] if rows else None

    # live workers: each supervisor reports itself every few seconds
    def record_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        self._write(self._sql.upsert_worker, {"worker_id": worker_id, "info": json.dumps(info),
                                               "now": self._now_param()})

    def list_workers(self, seen_within_seconds: float) -> list[dict[str, Any]]:
        rows = self._read(self._sql.workers_seen_since, {"since": self._since(seen_within_seconds)})
        return [{"worker_id": r["worker_id"], **_json(r["info"]), "started_at": ts(r["started_at"]),
                 "last_seen_at": ts(r["last_seen_at"])} for r in rows]

    def queue_depths(self) -> list[dict[str, Any]]:
        """The `geomill_queue_depth` view: per queue with queued or running tasks, queued/ready/running/active."""
        return [{k: (v if k == "queue" else int(v or 0)) for k, v in dict(r).items()}
                for r in self._read(self._sql.queue_depth_view)]

    def running_by_app(self) -> list[dict[str, Any]]:
        """Tasks running now per (executed_by_app, queue): what each worker process holds."""
        return [{"app": r["app"], "queue": r["queue"], "running": int(r["n"])}
                for r in self._read(self._sql.running_by_app)]

    # counters of repairs (the janitor's), for metrics
    def bump_counter(self, name: str, n: int = 1) -> None:
        if n:
            self._write(self._sql.bump_counter, {"name": name, "n": n})

    def counters(self) -> dict[str, int]:
        return {r["name"]: int(r["value"]) for r in self._read(self._sql.counters)}

    # metrics and debugging
    def metrics_snapshot(self) -> dict[str, Any]:
        """Jobs by type and status, queue depths, task durations as histogram buckets, retries, dead letters."""
        s = self._sql
        return {
            "jobs": [dict(r) for r in self._read(s.jobs_by_type_and_status)],
            "queues": [dict(r) for r in self._read(s.queue_depths)],
            "durations": [dict(r) for r in self._read(s.task_durations)],
            "retries": [dict(r) for r in self._read(s.retries_by_type)],
            "dead_letters": int(self._read(s.dead_letter_count)[0]["n"]),
            "counters": self.counters(),
        }

    def stuck_jobs(self, idle_seconds: float) -> list[dict[str, Any]]:
        """Unfinished jobs that have not moved for `idle_seconds` and have no task running on a live lease."""
        rows = self._read(self._sql.stuck_jobs, {"idle_since": self._since(idle_seconds), "now": self._now_param()})
        return [{**dict(r), "updated_at": ts(r["updated_at"])} for r in rows]


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str | bytes) else dict(value or {})
