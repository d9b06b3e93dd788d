"""The job queue: pgqueuer's tables in the same PostgreSQL, reached through its ``Queries``.

pgqueuer (asyncpg) gives what VOD jobs need: a job is picked by one worker (``FOR UPDATE SKIP
LOCKED``), heartbeats while it runs, and is picked again by another worker once its heartbeat
is older than the lease (a SIGKILLed worker); failures are retried with exponential backoff
(``DatabaseRetryEntrypointExecutor``); NOTIFY wakes idle workers at once. Enqueueing takes
the caller's connection, so a job is queued in the same transaction as the row it works on:
it exists if and only if that transaction commits.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import JobId
from pgqueuer.queries import Queries

from db.types import Connection

log = logging.getLogger(__name__)

TRANSCODE = "vod_transcode"  # payload {"video_id": int}
PURGE = "vod_purge"  # payload {"prefixes": [str], "keys": [str], "s3_uploads": [[key, id]]}


def queries(conn: Connection) -> Queries:
    # pgqueuer's driver is typed for a bare connection; a pool's proxy forwards the same API.
    return Queries(AsyncpgDriver(cast(asyncpg.Connection, conn)))


async def install(conn: Connection) -> None:
    """Create pgqueuer's schema, or bring it to this pgqueuer's version (idempotent; called
    by ``db.migrate.migrate`` under its advisory lock)."""
    q = queries(conn)
    if not await q.has_table(q.qbe.settings.queue_table):
        await q.install()
        log.info("installed the job queue's tables (pgqueuer)")
    else:
        await q.upgrade()


async def enqueue(
    conn: Connection, entrypoint: str, payload: dict[str, Any], *, priority: int = 0
) -> int:
    """Queue one job on ``conn`` (inside the caller's transaction, if any); its id."""
    (job_id,) = await queries(conn).enqueue(
        entrypoint, json.dumps(payload).encode(), priority=priority
    )
    return int(job_id)


async def cancel(conn: Connection, job_ids: list[int]) -> None:
    """Cancel queued or running jobs: a queued one is removed, a running one's worker is told
    by NOTIFY (handlers also check their own row, so a lost notification costs only time)."""
    if job_ids:
        await queries(conn).mark_job_as_cancelled([JobId(j) for j in job_ids])


def payload(data: bytes | None) -> dict[str, Any]:
    """A job's JSON payload (an object; anything else is a bug in whoever queued it)."""
    value = json.loads(data or b"{}")
    if not isinstance(value, dict):
        raise ValueError("job payload is not a JSON object")
    return value


async def dead_jobs(conn: Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Jobs held after their last attempt failed (the dead-letter list operators look at)."""
    table = queries(conn).qbe.settings.queue_table
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT id, entrypoint, payload, attempts, updated FROM {table} "
        "WHERE status = 'failed' ORDER BY id DESC LIMIT $1",
        limit,
    )
    return rows
