"""Queries on ``lives``."""

from __future__ import annotations

import secrets

import asyncpg

from db.types import Executor

LIVE_COLUMNS = (
    "id, title, description, user_id, status, start_time, end_time, viewer_count, chat_enabled, "
    "created_at, updated_at"
)


def generate_stream_key() -> str:
    """192 random bits, URL-safe (pasted into OBS, sent in RTMP publish names)."""
    return secrets.token_urlsafe(24)


async def create(db: Executor, *, user_id: int, title: str, description: str | None = None
                 ) -> asyncpg.Record:  # fmt: skip
    """Insert a live with a fresh stream key; the row includes ``stream_key``."""
    row = await db.fetchrow(
        f"""INSERT INTO lives (user_id, title, description, stream_key)
            VALUES ($1, $2, $3, $4) RETURNING {LIVE_COLUMNS}, stream_key""",
        user_id,
        title,
        description,
        generate_stream_key(),
    )
    assert row is not None
    return row


LIVE_STATUS_CHANNEL = "live_status"


async def get_publish_target(db: Executor, stream_key: str) -> asyncpg.Record | None:
    """The live a stream key publishes to, with what ingest must check about its owner."""
    return await db.fetchrow(
        """SELECT l.id, l.stream_key, l.status, l.user_id, u.username, u.is_active AS owner_active
           FROM lives l JOIN users u ON u.id = l.user_id
           WHERE l.stream_key = $1""",
        stream_key,
    )


async def mark_live(db: Executor, live_id: int) -> None:
    """A broadcast starts (a live is a reusable room: an ended live goes live again)."""
    await db.execute(
        f"""WITH u AS (
                UPDATE lives SET status = 'live', start_time = now(), end_time = NULL
                WHERE id = $1 RETURNING id, status)
            SELECT pg_notify('{LIVE_STATUS_CHANNEL}',
                             json_build_object('live_id', id, 'status', status)::text)
            FROM u""",
        live_id,
    )


async def mark_ended(db: Executor, live_id: int) -> None:
    await db.execute(
        f"""WITH u AS (
                UPDATE lives SET status = 'ended', end_time = now()
                WHERE id = $1 AND status = 'live' RETURNING id, status)
            SELECT pg_notify('{LIVE_STATUS_CHANNEL}',
                             json_build_object('live_id', id, 'status', status)::text)
            FROM u""",
        live_id,
    )
