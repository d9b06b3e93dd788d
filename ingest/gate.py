"""Who may publish: stream-key check and one publisher per live across every streamd process.

A publish is admitted when its key names a live whose owner is active and has a role that may
stream (creator or admin), and no other publisher, on this process or any other, holds that
live. Every ingest path goes through :meth:`PublishGate.admit`, so these are checked at each
publish (a reconnect included), not when the key was handed out. The cluster-wide rule is a
PostgreSQL session advisory lock per live, held for the life of the publish on one connection
per process (not one per publisher: fifty streams must not cost fifty database connections).
If that connection dies, PostgreSQL releases every lock it held; the gate reconnects, takes them
back, and ends the sessions whose lock someone else took meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from db import lives, locks
from db.errors import DB_ERRORS

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 1.0

RejectReason = Literal[
    "wrong_app", "bad_key", "unknown_key", "owner_inactive", "owner_not_creator",
    "owner_changed", "already_publishing", "database_error",
]  # fmt: skip
# The roles that may publish: those web.api's auth="creator" admits (a viewer keeps the lives
# and keys it had as a creator, so the key alone proves nothing).
STREAMING_ROLES = frozenset({"creator", "admin"})


@dataclass(frozen=True, slots=True)
class Admitted:
    live_id: int
    username: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    message: str  # safe to show to the publisher and to log: never the key


def redact(key: str) -> str:
    """What a log line may show of a stream key."""
    return f"{key[:4]}…({len(key)} chars)" if len(key) > 8 else "…"


class PublishGate:
    def __init__(self, pool: asyncpg.Pool, lock_dsn: str, app_name: str) -> None:
        self._pool = pool
        self._lock_dsn = lock_dsn
        self.app_name = app_name
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()
        self._held: dict[int, Callable[[], None]] = {}  # live id -> how to end its session
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        self._conn = await self._connect()

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._conn is not None:
            await self._conn.close()  # releases every advisory lock this process held

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._lock_dsn, timeout=10)
        conn.add_termination_listener(self._on_lost)
        return conn

    # --- admission ---

    async def admit(self, app: str, key: str, on_lost: Callable[[], None]) -> Admitted | Rejected:
        """Check ``app``/``key`` and take the live's lock. ``on_lost`` ends the session if the
        lock is ever lost for good."""
        if app != self.app_name:
            return Rejected("wrong_app", f"unknown application {app!r}; use /{self.app_name}")
        if not key or len(key) > 200 or not key.isascii():
            return Rejected("bad_key", "invalid stream key")
        try:
            row = await lives.get_publish_target(self._pool, key)
            # The row was found by an index lookup on the key; compare what Python compares in
            # constant time so the answer's timing does not depend on how much of it matched.
            if row is None or not hmac.compare_digest(row["stream_key"].encode(), key.encode()):
                return Rejected("unknown_key", "invalid stream key")
            if not row["owner_active"]:
                return Rejected("owner_inactive", "this account is deactivated")
            if row["owner_role"] not in STREAMING_ROLES:
                return Rejected(
                    "owner_not_creator", "this account may not stream: it needs the creator role"
                )
            live_id = int(row["id"])
            if live_id in self._held or not await self._try_lock(live_id):
                return Rejected("already_publishing", "this live already has a publisher")
            self._held[live_id] = on_lost
            try:
                started = await lives.mark_live(self._pool, live_id, sorted(STREAMING_ROLES))
            except BaseException:
                await self.release(live_id, ended=False)
                raise
            if not started:  # demoted or deactivated since the row above was read
                await self.release(live_id, ended=False)
                return Rejected("owner_changed", "this account may no longer stream")
        except DB_ERRORS as exc:
            log.warning("publish admission failed on a database error: %s", exc)
            return Rejected("database_error", "temporarily unavailable, retry shortly")
        return Admitted(live_id, str(row["username"]))

    async def release(self, live_id: int, *, ended: bool = True) -> None:
        """The publish is over: free the lock, and mark the live ended when ``ended``."""
        if self._held.pop(live_id, None) is None:
            return
        try:
            if ended:
                await lives.mark_ended(self._pool, live_id)
            await self._unlock(live_id)
        except DB_ERRORS as exc:
            # The lock dies with its connection; the status is fixed by the next publish.
            log.warning("live %d: could not record the end of the publish: %s", live_id, exc)

    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    # --- the lock connection ---

    async def _try_lock(self, live_id: int) -> bool:
        async with self._conn_lock:
            if self._conn is None or self._conn.is_closed():
                raise asyncpg.InterfaceError("publish lock connection is down")
            return await locks.try_lock_publish(self._conn, live_id)

    async def _unlock(self, live_id: int) -> None:
        async with self._conn_lock:
            if self._conn is not None and not self._conn.is_closed():
                await locks.unlock_publish(self._conn, live_id)

    def _on_lost(self, conn: asyncpg.Connection | PoolConnectionProxy) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        log.warning("publish lock connection lost; %d live lock(s) to take back", len(self._held))
        self._reconnecting = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        while not self._closed:
            try:
                conn = await self._connect()
            except DB_ERRORS:
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            async with self._conn_lock:
                self._conn = conn
            for live_id, end_session in list(self._held.items()):
                with contextlib.suppress(*DB_ERRORS):
                    if await self._try_lock(live_id):
                        continue
                log.warning("live %d: lock taken elsewhere while disconnected; ending", live_id)
                self._held.pop(live_id, None)
                end_session()
            log.info("publish lock connection restored")
            return
