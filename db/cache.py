"""A key/value cache in PostgreSQL (``cache_data``, UNLOGGED, JSONB values, optional TTL).

Reads never return an expired row: expiry is checked in the query, so correctness does not
depend on the clean-up task, which only reclaims space, in batches, off the request path.
Use the primary pool: replicas cannot read UNLOGGED tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from db.errors import DB_ERRORS
from db.types import Executor

log = logging.getLogger(__name__)

MISSING: Any = object()  # a stored JSON null is a value; MISSING means "no live row"
CLEANUP_BATCH = 1000
# How long a process computing a key keeps others waiting before they compute it themselves.
LEASE_S = 10.0
LEASE_POLL_S = 0.02


async def get(db: Executor, key: str, default: Any = None) -> Any:
    raw = await db.fetchval(
        """SELECT value FROM cache_data
           WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())""",
        key,
    )
    if raw is None:
        return default
    return json.loads(raw)


async def set(db: Executor, key: str, value: Any, ttl: float | None = None) -> None:
    """Store ``value`` (JSON-serialisable) under ``key``; ``ttl`` seconds, or forever when None."""
    if ttl is not None and ttl <= 0:
        raise ValueError("ttl must be positive (or None for no expiry)")
    await db.execute(
        """INSERT INTO cache_data (key, value, expires_at)
           VALUES ($1, $2::jsonb, now() + make_interval(secs => $3))
           ON CONFLICT (key) DO UPDATE
           SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at""",
        key,
        json.dumps(value),
        ttl,
    )


async def delete(db: Executor, key: str) -> bool:
    status = await db.execute("DELETE FROM cache_data WHERE key = $1", key)
    return bool(status == "DELETE 1")


class Cache:
    """get-or-compute with one computation per key at a time, across tasks and processes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[Any]], ttl: float | None
    ) -> Any:
        value = await get(self._pool, key, MISSING)
        if value is not MISSING:
            return value
        # Same process: later callers wait on the first caller's future (no extra connection).
        if (waiting := self._inflight.get(key)) is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._compute_locked(key, compute, ttl)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, no "never retrieved" warning
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    async def _compute_locked(
        self, key: str, compute: Callable[[], Awaitable[Any]], ttl: float | None
    ) -> Any:
        # Other processes: a lease row in the same table, taken with one INSERT. The winner
        # computes and stores; the others poll for the value. No connection is held while
        # computing (compute itself may need the pool: holding one here could starve it).
        lease = "lease:" + hashlib.sha1(key.encode()).hexdigest()  # noqa: S324 - a name, not security
        if await self._take_lease(lease):
            try:
                value = await get(self._pool, key, MISSING)  # stored while we raced for it?
                if value is MISSING:
                    value = await compute()
                    await set(self._pool, key, value, ttl)
                return value
            finally:
                await delete(self._pool, lease)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_S
        while loop.time() < deadline:
            await asyncio.sleep(LEASE_POLL_S)
            value = await get(self._pool, key, MISSING)
            if value is not MISSING:
                return value
            if await get(self._pool, lease, MISSING) is MISSING:
                break  # the other process failed or gave up: compute here
        value = await compute()
        await set(self._pool, key, value, ttl)
        return value

    async def _take_lease(self, lease: str) -> bool:
        taken = await self._pool.fetchval(
            """INSERT INTO cache_data (key, value, expires_at)
               VALUES ($1, 'true', now() + make_interval(secs => $2))
               ON CONFLICT (key) DO UPDATE
               SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
               WHERE cache_data.expires_at <= now()
               RETURNING true""",
            lease,
            LEASE_S,
        )
        return bool(taken)


async def cleanup_expired(db: Executor, batch: int = CLEANUP_BATCH) -> int:
    """Delete expired rows in batches of ``batch`` (short transactions, no long locks)."""
    total = 0
    while True:
        status = await db.execute(
            """DELETE FROM cache_data WHERE key IN (
                   SELECT key FROM cache_data WHERE expires_at <= now()
                   LIMIT $1 FOR UPDATE SKIP LOCKED)""",
            batch,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def run_cleanup(pool: asyncpg.Pool, interval: float) -> None:
    """Forever: clean up, sleep ``interval``. Database outages are logged, never fatal."""
    while True:
        try:
            deleted = await cleanup_expired(pool)
            if deleted:
                log.info("cache clean-up deleted %d expired rows", deleted)
        except DB_ERRORS as exc:
            log.warning("cache clean-up failed, will retry: %s", exc)
        await asyncio.sleep(interval)
