"""Job callback subscribers (table job_subscribers, migration 010), shared by both SQL stores: the
`SubscriberStore` port. Statements are written once with ``:name`` parameters and converted for PostgreSQL."""

from __future__ import annotations

from geomill.engine.ports import Subscriber
from geomill.store.access import StatementAccess
from geomill.store.common_queries import pyformat

_COLUMNS = "subscriber_id, job_id, success_uri, failed_uri, in_progress_uri, notified, attempts"
SQLITE = {
    "add": ("INSERT INTO job_subscribers (job_id, success_uri, failed_uri, in_progress_uri, next_at, created_at) "
            "VALUES (:job_id, :success_uri, :failed_uri, :in_progress_uri, :now, :now)"),
    "due": (f"SELECT {_COLUMNS} FROM job_subscribers WHERE closed_at IS NULL AND next_at <= :now "
            "ORDER BY next_at, subscriber_id LIMIT :limit"),
    "update": ("UPDATE job_subscribers SET notified = :notified, attempts = :attempts, next_at = :next_at, "
               "closed_at = :closed_at WHERE subscriber_id = :subscriber_id AND notified = :expected "
               "AND closed_at IS NULL"),
}
POSTGRES = {name: pyformat(sql) for name, sql in SQLITE.items()}


class JobSubscribers(StatementAccess):
    """The `SubscriberStore` port over the store's `_read`/`_write` (one statement, its own transaction)."""

    dialect: str

    def _subscriber_sql(self, name: str) -> str:
        return (POSTGRES if self.dialect == "postgres" else SQLITE)[name]

    def add_subscriber(self, job_id: str, success_uri: str | None, failed_uri: str | None,
                       in_progress_uri: str | None) -> None:
        self._write(self._subscriber_sql("add"), {
            "job_id": job_id, "success_uri": success_uri, "failed_uri": failed_uri,
            "in_progress_uri": in_progress_uri, "now": self._since(0.0)}, "add_subscriber")

    def due_subscribers(self, limit: int) -> list[Subscriber]:
        rows = self._read(self._subscriber_sql("due"), {"now": self._since(0.0), "limit": int(limit)})
        return [Subscriber(int(r["subscriber_id"]), r["job_id"], r["success_uri"], r["failed_uri"],
                           r["in_progress_uri"], r["notified"], int(r["attempts"])) for r in rows]

    def update_subscriber(self, subscriber_id: int, expected: str, notified: str, attempts: int,
                          next_in_seconds: float, close: bool) -> bool:
        return self._write(self._subscriber_sql("update"), {
            "subscriber_id": subscriber_id, "expected": expected, "notified": notified, "attempts": attempts,
            "next_at": self._since(-next_in_seconds), "closed_at": self._since(0.0) if close else None},
            "update_subscriber") == 1
