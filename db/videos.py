"""Queries on ``videos`` (the recordings of lives, so far; uploads come with the VOD issue)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from db.types import Executor

VIDEO_COLUMNS = (
    "id, title, description, user_id, thumbnail_url, hls_master_url, hls_key, duration, "
    "file_size, status, created_at, updated_at"
)


async def create_recorded(
    db: Executor,
    *,
    user_id: int,
    title: str,
    hls_master_url: str,
    hls_key: str,
    duration: float,
    file_size: int,
    thumbnail_url: str | None,
    description: str | None = None,
) -> int:
    """Insert a ready video made of a live's recorded HLS segments; returns its id."""
    video_id = await db.fetchval(
        """INSERT INTO videos (title, description, user_id, thumbnail_url, hls_master_url,
                               hls_key, duration, file_size, original_format, status,
                               processing_progress)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'hls', 'ready', 100)
           RETURNING id""",
        title[:100],
        description,
        user_id,
        thumbnail_url,
        hls_master_url,
        hls_key,
        duration,
        file_size,
    )
    return int(video_id)


async def get(db: Executor, video_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {VIDEO_COLUMNS} FROM videos WHERE id = $1", video_id)


# A ready video of an active account, with its owner's name and the live it recorded (NULL for
# uploads; the first recording when, against the packager's habits, several name one video).
PUBLIC_COLUMNS = """v.id, v.title, v.description, v.user_id, u.username, v.thumbnail_url,
    v.hls_master_url, v.hls_key, v.duration, v.created_at,
    (SELECT r.live_id FROM live_recordings r WHERE r.video_id = v.id
     ORDER BY r.id LIMIT 1) AS live_id"""
_PUBLIC_FROM = "videos v JOIN users u ON u.id = v.user_id WHERE v.status = 'ready' AND u.is_active"


async def list_public(
    db: Executor, *, username: str | None, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Ready videos of active accounts, newest first, ids below ``before_id``."""
    rows: Sequence[asyncpg.Record] = await db.fetch(
        f"""SELECT {PUBLIC_COLUMNS} FROM {_PUBLIC_FROM}
              AND ($1::text IS NULL OR lower(u.username) = lower($1))
              AND ($2::bigint IS NULL OR v.id < $2)
            ORDER BY v.id DESC LIMIT $3""",
        username,
        before_id,
        limit,
    )
    return list(rows)


async def get_public(db: Executor, video_id: int) -> asyncpg.Record | None:
    """The video if it is ready and its owner active; None otherwise."""
    return await db.fetchrow(f"SELECT {PUBLIC_COLUMNS} FROM {_PUBLIC_FROM} AND v.id = $1", video_id)
