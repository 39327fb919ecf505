"""Status reads for an event loop (the HTTP API), one per store kind, behind `engine.ports.StatusReader`.

PostgreSQL: an asyncio connection pool of its own (at most ``STATUS_POOL_SIZE`` connections, in API processes only),
the job and its stages read in one pipelined round trip; the event loop never waits on a thread. SQLite: the store's
own read, in a thread (a local file read; the store's lock is shared with the process's other threads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from geomill.domain import StoreError, Task, TaskStatus
from geomill.engine.ports import JobView, Store
from geomill.store.reads import (
    VIEW_TASKS,
    job_from_rows,
    job_sql,
    stages_from_rows,
    stages_sql,
    tasks_by_status_sql,
    view_statuses,
)
from geomill.store.rows import task_from_row

log = logging.getLogger(__name__)
STATUS_POOL_SIZE = 2


class ThreadedStatusReader:
    """Any store's `job_view`, run in the loop's default thread pool."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def job_view(self, job_id: str) -> JobView:
        return await asyncio.to_thread(self.store.job_view, job_id)

    async def close(self) -> None:
        return None


class AsyncPostgresStatusReader:
    """`job_view` on psycopg's async pool. A lost connection (server restart) is retried for `retry_seconds`, then
    reported as StoreError (HTTP 503) rather than holding the request for the sync store's full minute."""

    def __init__(self, url: str, *, pool_size: int = STATUS_POOL_SIZE, retry_seconds: float = 5.0) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self.retry_seconds = retry_seconds
        self._pool = AsyncConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False, name="geomill-status",
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
            timeout=retry_seconds)

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def job_view(self, job_id: str) -> JobView:
        job_rows, stage_rows = await self._run(self._job_and_stage_rows, job_id)
        job, stages = job_from_rows(job_id, job_rows), stages_from_rows(stage_rows)
        present = view_statuses(stages)
        failed = await self._tasks(job_id, TaskStatus.FAILED) if TaskStatus.FAILED in present else []
        running = await self._tasks(job_id, TaskStatus.PROCESSING) if TaskStatus.PROCESSING in present else []
        return JobView(job, stages, failed, running)

    @staticmethod
    async def _job_and_stage_rows(conn: Any, job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with conn.pipeline():
            job_cur = await conn.execute(job_sql("%s"), (job_id,))
            stage_cur = await conn.execute(stages_sql("%s"), (job_id, job_id))
            return await job_cur.fetchall(), await stage_cur.fetchall()

    async def _tasks(self, job_id: str, status: TaskStatus) -> list[Task]:
        async def run(conn: Any, job_id: str) -> list[dict[str, Any]]:
            cur = await conn.execute(tasks_by_status_sql("%s"), (job_id, str(status), VIEW_TASKS))
            return await cur.fetchall()
        return [task_from_row(r) for r in await self._run(run, job_id)]

    async def _run(self, fn: Any, job_id: str) -> Any:
        import psycopg
        from psycopg_pool import PoolClosed, PoolTimeout

        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                async with self._pool.connection() as conn:
                    return await fn(conn, job_id)
            except PoolClosed as exc:
                raise StoreError("status read: the reader is closed") from exc
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreError(f"status read: PostgreSQL unavailable: {exc}") from exc
                log.warning("status read: PostgreSQL unavailable (%s); retrying in %.2f s", str(exc).strip(), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as exc:
                raise StoreError(f"status read failed: {exc}") from exc


async def open_status_reader(store: Store) -> ThreadedStatusReader | AsyncPostgresStatusReader:
    """The reader for `store`'s kind (PostgreSQL: its own small async pool, opened here)."""
    url = getattr(store, "url", None)
    if getattr(store, "dialect", None) == "postgres" and url:
        reader = AsyncPostgresStatusReader(url)
        await reader.open()
        return reader
    return ThreadedStatusReader(store)
