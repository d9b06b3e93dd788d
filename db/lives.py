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
