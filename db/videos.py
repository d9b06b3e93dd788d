"""Queries on ``videos`` (the recordings of lives, so far; uploads come with the VOD issue)."""

from __future__ import annotations

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
