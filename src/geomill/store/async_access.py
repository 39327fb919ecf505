"""The store on an event loop (the HTTP API's status reads and submissions), behind `engine.ports.AsyncStore`.

PostgreSQL: an asyncio connection pool of its own (at most ``ASYNC_POOL_SIZE`` connections, in API processes only);
a status read is one statement (the job with its stages), a submission the store's one statement. The event
loop never waits on a thread. SQLite: the store's own methods, in a thread (the store's lock is shared with the
process's other threads, so the loop must not take it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from geomill.domain import Job, NewJob, StoreError, Task, TaskStatus
from geomill.engine.ports import JobView, Store
from geomill.pgconn import DEFAULT_SOCKET_TIMEOUT, Reachability, async_bounded, connect_kwargs, quiet_pool_logger
from geomill.store import postgres_queries as q
from geomill.store.postgres import create_job_params
from geomill.store.reads import VIEW_TASKS, job_and_stages_from_view_row, job_from_rows, view_statuses
from geomill.store.rows import task_from_row

log = logging.getLogger(__name__)
ASYNC_POOL_SIZE = 2


class ThreadedAsyncStore:
    """Any store's methods, run in the loop's default thread pool."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def job_view(self, job_id: str) -> JobView:
        return await asyncio.to_thread(self.store.job_view, job_id)

    async def create_job(self, job: NewJob) -> tuple[Job, bool]:
        return await asyncio.to_thread(self.store.create_job, job)

    async def close(self) -> None:
        return None


class PostgresAsyncStore:
    """On psycopg's async pool. A lost connection (server restart) is retried for `retry_seconds` (both calls are
    safe to repeat: a read, and an insert-or-return-existing), then reported as StoreError (HTTP 503) rather than
    holding the request for the sync store's full minute."""

    def __init__(self, url: str, *, pool_size: int = ASYNC_POOL_SIZE, retry_seconds: float = 5.0,
                 socket_timeout: float = DEFAULT_SOCKET_TIMEOUT) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self.retry_seconds = retry_seconds
        quiet_pool_logger()
        self._reachability = Reachability(log)
        self._pool = AsyncConnectionPool(
            # all connections opened up front: growing the pool in the middle of a burst costs its requests a
            # connection set-up each
            url, min_size=max(1, pool_size), max_size=max(1, pool_size), open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, **connect_kwargs(socket_timeout)}, name="geomill-async",
            connection_class=async_bounded(socket_timeout),  # a silent server fails the request (503), not hangs it
            timeout=retry_seconds)

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=self.retry_seconds)

    async def close(self) -> None:
        await self._pool.close()

    async def job_view(self, job_id: str) -> JobView:
        job, stages = job_and_stages_from_view_row(job_id, await self._run(self._view_rows, job_id))
        present = view_statuses(stages)
        failed = await self._tasks(job_id, TaskStatus.FAILED) if TaskStatus.FAILED in present else []
        running = await self._tasks(job_id, TaskStatus.PROCESSING) if TaskStatus.PROCESSING in present else []
        return JobView(job, stages, failed, running)

    async def create_job(self, job: NewJob) -> tuple[Job, bool]:
        async def run(conn: Any, job_id: str) -> list[dict[str, Any]]:
            cur = await conn.execute(q.CREATE_JOB, create_job_params(job))
            rows = await cur.fetchall()
            if not rows:  # a concurrent submission of the same job committed after our snapshot
                cur = await conn.execute(q.STATEMENTS.job, {"job_id": job_id})
                rows = [{**r, "created": False} for r in await cur.fetchall()]
            return rows
        rows = await self._run(run, job.job_id)
        return job_from_rows(job.job_id, rows), bool(rows[0]["created"])

    @staticmethod
    async def _view_rows(conn: Any, job_id: str) -> list[dict[str, Any]]:
        cur = await conn.execute(q.JOB_VIEW, (job_id,))
        return await cur.fetchall()

    async def _tasks(self, job_id: str, status: TaskStatus) -> list[Task]:
        async def run(conn: Any, job_id: str) -> list[dict[str, Any]]:
            args = {"job_id": job_id, "status": str(status), "limit": VIEW_TASKS}
            cur = await conn.execute(q.STATEMENTS.tasks_by_status, args)
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
                    result = await fn(conn, job_id)
                self._reachability.answered()
                return result
            except PoolClosed as exc:
                raise StoreError("the async store is closed") from exc
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreError(f"PostgreSQL unavailable: {exc}") from exc
                self._reachability.lost("PostgreSQL unavailable (%s); requests are retried for up to %.0f s",
                                        str(exc).strip(), self.retry_seconds)  # one line per outage, not per retry
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {exc}") from exc


async def open_async_store(store: Store) -> ThreadedAsyncStore | PostgresAsyncStore:
    """The async access for `store`'s kind (PostgreSQL: its own small async pool, opened here)."""
    url = getattr(store, "url", None)
    if getattr(store, "dialect", None) == "postgres" and url:
        access = PostgresAsyncStore(url, socket_timeout=getattr(store, "socket_timeout", DEFAULT_SOCKET_TIMEOUT))
        await access.open()
        return access
    return ThreadedAsyncStore(store)
