"""Service-side state both SQL stores share: API keys, idempotency keys, live workers, counters, metrics.

Each store mixes in `ServiceState` and provides `_read`, `_write` (one statement in its own transaction, returning
the row count), its placeholder `_mark`, `_since(seconds)` (a time `seconds` ago in the store's time type) and
`_now_param()`, and `_duration` (SQL for a task's run time in seconds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from geomill.store.rows import ts

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class ServiceState:
    _mark = "?"
    _duration = "(finished_at - execution_started_at)"

    def _read(self, sql: str, params: Any = ()) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _since(self, seconds: float) -> Any:
        raise NotImplementedError

    def _now_param(self) -> Any:
        return self._since(0.0)

    def _sql(self, text: str) -> str:
        return text.replace("?", self._mark)

    # API keys: only a hash of the secret is stored
    def create_api_key(self, key_id: str, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        self._write(self._sql("INSERT INTO api_keys (key_id, name, key_hash, scopes, created_at) VALUES (?, ?, ?, ?, ?)"),
                    (key_id, name, key_hash, ",".join(scopes), self._now_param()))

    def api_key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        rows = self._read(self._sql("SELECT key_id, name, scopes, revoked_at FROM api_keys WHERE key_hash = ?"),
                          (key_hash,))
        if not rows:
            return None
        r = rows[0]
        return {"key_id": r["key_id"], "name": r["name"], "scopes": r["scopes"].split(","),
                "revoked": r["revoked_at"] is not None}

    def revoke_api_key(self, key_id: str) -> bool:
        sql = self._sql("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL")
        return self._write(sql, (self._now_param(), key_id)) == 1

    def list_api_keys(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT key_id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [{"key_id": r["key_id"], "name": r["name"], "scopes": r["scopes"].split(","),
                 "created_at": ts(r["created_at"]), "revoked_at": ts(r["revoked_at"])} for r in rows]

    # idempotency keys (the HTTP Idempotency-Key header)
    def remember_idempotency_key(self, key: str, job_id: str) -> str:
        """The job id first stored for `key` (this one, if the key is new)."""
        self._write(self._sql("INSERT INTO idempotency_keys (idempotency_key, job_id, created_at) VALUES (?, ?, ?) "
                              "ON CONFLICT (idempotency_key) DO NOTHING"), (key, job_id, self._now_param()))
        rows = self._read(self._sql("SELECT job_id FROM idempotency_keys WHERE idempotency_key = ?"), (key,))
        return rows[0]["job_id"]

    def job_for_idempotency_key(self, key: str) -> str | None:
        rows = self._read(self._sql("SELECT job_id FROM idempotency_keys WHERE idempotency_key = ?"), (key,))
        return rows[0]["job_id"] if rows else None

    # live workers: each supervisor reports itself every few seconds
    def record_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        now = self._now_param()
        self._write(self._sql(
            "INSERT INTO workers (worker_id, info, started_at, last_seen_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, last_seen_at = excluded.last_seen_at"),
            (worker_id, json.dumps(info), now, now))

    def list_workers(self, seen_within_seconds: float) -> list[dict[str, Any]]:
        rows = self._read(self._sql("SELECT * FROM workers WHERE last_seen_at >= ? ORDER BY worker_id"),
                          (self._since(seen_within_seconds),))
        return [{"worker_id": r["worker_id"], **_json(r["info"]), "started_at": ts(r["started_at"]),
                 "last_seen_at": ts(r["last_seen_at"])} for r in rows]

    # counters of repairs (the janitor's), for metrics
    def bump_counter(self, name: str, n: int = 1) -> None:
        if n:
            self._write(self._sql("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                                  "SET value = counters.value + excluded.value"), (name, n))

    def counters(self) -> dict[str, int]:
        return {r["name"]: int(r["value"]) for r in self._read("SELECT name, value FROM counters")}

    # metrics and debugging
    def metrics_snapshot(self) -> dict[str, Any]:
        """Jobs by type and status, queue depths, task durations as histogram buckets, retries, dead letters."""
        return {
            "jobs": [dict(r) for r in self._read(
                "SELECT job_type, status, COUNT(*) AS n FROM jobs GROUP BY job_type, status")],
            "queues": [dict(r) for r in self._read(
                "SELECT target_queue, status, COUNT(*) AS n FROM tasks WHERE status IN ('queued', 'processing') "
                "GROUP BY target_queue, status")],
            "durations": [dict(r) for r in self._read(self._duration_sql())],
            "retries": [dict(r) for r in self._read(
                "SELECT task_type, SUM(CASE WHEN attempt > 1 THEN attempt - 1 ELSE 0 END) AS n FROM tasks "
                "GROUP BY task_type")],
            "dead_letters": int(self._read("SELECT COUNT(*) AS n FROM dead_letters")[0]["n"]),
            "counters": self.counters(),
        }

    def _duration_sql(self) -> str:
        d = self._duration
        buckets = ", ".join(f"SUM(CASE WHEN {d} <= {b} THEN 1 ELSE 0 END) AS le_{i}"
                            for i, b in enumerate(DURATION_BUCKETS))
        return (f"SELECT task_type, COUNT(*) AS n, SUM({d}) AS total, {buckets} FROM tasks "
                "WHERE status = 'completed' AND execution_started_at IS NOT NULL GROUP BY task_type")

    def stuck_jobs(self, idle_seconds: float) -> list[dict[str, Any]]:
        """Unfinished jobs that have not moved for `idle_seconds` and have no task running on a live lease."""
        rows = self._read(self._sql(
            "SELECT j.job_id, j.job_type, j.status, j.stage, j.stage_count, j.updated_at FROM jobs j "
            "WHERE j.status IN ('queued', 'processing') AND j.updated_at < ? AND NOT EXISTS ("
            "SELECT 1 FROM tasks t WHERE t.job_id = j.job_id AND t.status = 'processing' AND t.lease_expires_at > ?) "
            "ORDER BY j.updated_at LIMIT 100"), (self._since(idle_seconds), self._now_param()))
        return [{**dict(r), "updated_at": ts(r["updated_at"])} for r in rows]


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str | bytes) else dict(value or {})
