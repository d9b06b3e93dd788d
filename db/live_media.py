"""Queries of the live packager: a live's stream fields and the journal of its recordings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from db.types import Executor

RECORDING_COLUMNS = (
    "id, live_id, node, prefix, renditions, poster_key, started_at, updated_at, finished_at, "
    "video_id"
)
SEGMENT_COLUMNS = (
    "rendition, sequence, uri, init_uri, duration, discontinuity, program_date_time, bytes"
)

# (rendition, sequence, uri, init_uri, duration, discontinuity, program_date_time, bytes)
SegmentRow = tuple[str, int, str, str | None, float, bool, datetime, int]


# --- lives ---


async def start_broadcast(db: Executor, live_id: int) -> None:
    """A new broadcast: forget the previous one's keyframe warning and poster."""
    await db.execute(
        "UPDATE lives SET keyframe_interval_ms = NULL, thumbnail_url = NULL WHERE id = $1",
        live_id,
    )


async def set_keyframe_interval(db: Executor, live_id: int, interval_ms: int) -> None:
    await db.execute(
        "UPDATE lives SET keyframe_interval_ms = $2 WHERE id = $1", live_id, interval_ms
    )


async def set_thumbnail_url(db: Executor, live_id: int, url: str) -> None:
    await db.execute(
        "UPDATE lives SET thumbnail_url = $2 WHERE id = $1 AND thumbnail_url IS DISTINCT FROM $2",
        live_id,
        url,
    )


async def get_recording_owner(db: Executor, live_id: int) -> asyncpg.Record | None:
    """Who a live's recording belongs to and what it is called."""
    return await db.fetchrow("SELECT user_id, title FROM lives WHERE id = $1", live_id)


# --- recordings ---


async def create_recording(
    db: Executor, *, live_id: int, node: str, prefix: str, poster_key: str | None
) -> int:
    recording_id = await db.fetchval(
        """INSERT INTO live_recordings (live_id, node, prefix, poster_key)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        live_id,
        node,
        prefix,
        poster_key,
    )
    return int(recording_id)


async def add_segments(db: Executor, recording_id: int, rows: Sequence[SegmentRow]) -> None:
    """Journal stored segments (idempotent: a retried batch does not duplicate rows)."""
    await db.executemany(
        f"""INSERT INTO live_recording_segments (recording_id, {SEGMENT_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (recording_id, rendition, sequence) DO NOTHING""",
        [(recording_id, *row) for row in rows],
    )
    await db.execute("UPDATE live_recordings SET updated_at = now() WHERE id = $1", recording_id)


async def set_renditions(db: Executor, recording_id: int, renditions: dict[str, Any]) -> None:
    await db.execute(
        "UPDATE live_recordings SET renditions = $2::jsonb, updated_at = now() WHERE id = $1",
        recording_id,
        json.dumps(renditions),
    )


async def get_recording(db: Executor, recording_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {RECORDING_COLUMNS} FROM live_recordings WHERE id = $1", recording_id
    )


async def lock_recording(db: Executor, recording_id: int) -> asyncpg.Record | None:
    """The recording's row, locked until the transaction ends (finalisers serialise on it)."""
    return await db.fetchrow(
        f"SELECT {RECORDING_COLUMNS} FROM live_recordings WHERE id = $1 FOR UPDATE", recording_id
    )


async def get_segments(db: Executor, recording_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {SEGMENT_COLUMNS} FROM live_recording_segments
            WHERE recording_id = $1 ORDER BY rendition, sequence""",
        recording_id,
    )


async def unfinished_recordings(
    db: Executor, *, node: str, stale_after_s: float
) -> list[asyncpg.Record]:
    """Recordings to finalise: this node's unfinished ones, and other nodes' that have not
    been written to for ``stale_after_s`` seconds (their process is gone)."""
    return await db.fetch(
        f"""SELECT {RECORDING_COLUMNS} FROM live_recordings
            WHERE finished_at IS NULL
              AND (node = $1 OR updated_at < now() - make_interval(secs => $2))
            ORDER BY id""",
        node,
        stale_after_s,
    )


async def finish_recording(db: Executor, recording_id: int, video_id: int | None) -> None:
    await db.execute(
        "UPDATE live_recordings SET finished_at = now(), video_id = $2 WHERE id = $1",
        recording_id,
        video_id,
    )
