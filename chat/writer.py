"""Posting messages: every message is persisted and NOTIFYed in batches (group commit).

Posters queue their message and wait; a writer task takes whatever has queued and writes it in
one statement that INSERTs the rows and NOTIFYs them (db.chat.insert_messages). While a batch is
being written the next one gathers, so under load each commit carries many messages, and when
idle a message is written at once. ``in_flight`` batches may be written concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from db import chat as chat_db
from db.errors import DB_ERRORS

log = logging.getLogger(__name__)

MAX_BATCH = 256
MAX_WAITING = 10_000  # posts queued at once; more are refused (the database is not keeping up)


class WriterBusy(Exception):
    """Too many posts are waiting for the database."""


@dataclass(slots=True)
class _Post:
    live_id: int
    user_id: int
    text: str
    done: asyncio.Future[tuple[int, datetime]] = field(repr=False)


class MessageWriter:
    def __init__(self, pool: asyncpg.Pool, *, in_flight: int = 2) -> None:
        self._pool = pool
        self._waiting: list[_Post] = []
        self._wake = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"chat-writer-{i}") for i in range(in_flight)
        ]

    async def post(self, live_id: int, user_id: int, text: str) -> tuple[int, datetime]:
        """Persist and announce one message; its (id, created_at) once committed."""
        if len(self._waiting) >= MAX_WAITING:
            raise WriterBusy("too many messages are waiting to be written")
        done: asyncio.Future[tuple[int, datetime]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Post(live_id, user_id, text, done))
        self._wake.set()
        return await done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            if not self._waiting:
                self._wake.clear()
            batch = [p for p in batch if not p.done.done()]  # its poster went away
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_Post]) -> None:
        try:
            rows = await chat_db.insert_messages(
                self._pool,
                [p.live_id for p in batch],
                [p.user_id for p in batch],
                [p.text for p in batch],
            )
        except asyncpg.IntegrityConstraintViolationError:
            if len(batch) == 1:
                _fail(batch, ValueError("the live or the user no longer exists"))
                return
            # One row broke a constraint (its live was deleted meanwhile): write each alone so
            # the others still go through.
            for post in batch:
                await self._write([post])
            return
        except DB_ERRORS as exc:
            log.warning("chat: writing %d message(s) failed: %s", len(batch), exc)
            _fail(batch, exc)
            return
        for post, row in zip(batch, rows, strict=True):
            if not post.done.done():
                post.done.set_result((int(row["id"]), row["created_at"]))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        _fail(self._waiting, ConnectionError("chat is shutting down"))
        self._waiting = []


def _fail(batch: list[_Post], exc: BaseException) -> None:
    for post in batch:
        if not post.done.done():
            post.done.set_exception(exc)
