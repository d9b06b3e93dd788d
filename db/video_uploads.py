"""Queries on ``video_uploads`` and ``video_upload_parts``: S3-multipart shaped uploads."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from db.types import Connection, Executor

UPLOAD_COLUMNS = (
    "id, video_id, user_id, filename, content_type, size, part_size, part_count, storage, "
    "object_key, s3_upload_id, status, created_at, expires_at"
)
OPEN = ("uploading", "completing")


async def lock_user(conn: Connection, user_id: int) -> None:
    """Serialise one user's upload starts (quota and concurrency checks, then the insert)
    until the transaction ends; other users are not held up."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('upload:' || $1, 0))",
                       str(user_id))  # fmt: skip


async def usage(db: Executor, user_id: int) -> tuple[int, int]:
    """(unfinished uploads, bytes of originals kept or being uploaded) of one user."""
    row = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE status IN ('uploading', 'completing')) AS open,
                  coalesce(sum(size), 0) AS bytes
             FROM video_uploads
            WHERE user_id = $1 AND status IN ('uploading', 'completing', 'completed')""",
        user_id,
    )
    assert row is not None
    return int(row["open"]), int(row["bytes"])


async def create(
    db: Executor, *, upload_id: str, video_id: int, user_id: int, filename: str,
    content_type: str, size: int, part_size: int, part_count: int, storage: str,
    object_key: str, s3_upload_id: str | None, ttl_s: float,
) -> asyncpg.Record:  # fmt: skip
    row = await db.fetchrow(
        f"""INSERT INTO video_uploads (id, video_id, user_id, filename, content_type, size,
                part_size, part_count, storage, object_key, s3_upload_id, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                    now() + make_interval(secs => $12))
            RETURNING {UPLOAD_COLUMNS}""",
        upload_id, video_id, user_id, filename, content_type, size, part_size, part_count,
        storage, object_key, s3_upload_id, ttl_s,
    )  # fmt: skip
    assert row is not None
    return row


async def get(db: Executor, upload_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {UPLOAD_COLUMNS} FROM video_uploads WHERE id = $1", upload_id)


async def list_open(db: Executor, user_id: int) -> list[asyncpg.Record]:
    rows: Sequence[asyncpg.Record] = await db.fetch(
        f"""SELECT {UPLOAD_COLUMNS} FROM video_uploads
             WHERE user_id = $1 AND status = 'uploading' AND expires_at > now()
             ORDER BY created_at DESC LIMIT 20""",
        user_id,
    )
    return list(rows)


async def record_part(db: Executor, upload_id: str, number: int, size: int) -> bool:
    """Note a part stored on local disk; False when the upload is no longer open for parts."""
    row = await db.fetchrow(
        """INSERT INTO video_upload_parts (upload_id, number, size)
           SELECT id, $2, $3 FROM video_uploads WHERE id = $1 AND status = 'uploading'
           ON CONFLICT (upload_id, number) DO UPDATE SET size = EXCLUDED.size,
               received_at = now()
           RETURNING number""",
        upload_id, number, size,
    )  # fmt: skip
    return row is not None


async def parts(db: Executor, upload_id: str) -> dict[int, int]:
    rows = await db.fetch(
        "SELECT number, size FROM video_upload_parts WHERE upload_id = $1", upload_id
    )
    return {int(r["number"]): int(r["size"]) for r in rows}


async def transition(db: Executor, upload_id: str, before: Sequence[str], after: str) -> bool:
    """Move an upload from one of ``before`` to ``after``; False when it was not in ``before``."""
    row = await db.fetchrow(
        "UPDATE video_uploads SET status = $3 WHERE id = $1 AND status = ANY($2::text[]) "
        "RETURNING id",
        upload_id, list(before), after,
    )  # fmt: skip
    return row is not None


async def claim(pool: asyncpg.Pool, upload_id: str) -> bool:
    """'uploading' -> 'completing', the guard against two completions at once, committed
    without waiting for the WAL flush: right after a big upload that flush queues behind the
    kernel writing the file back (measured ~1 s per GiB on one disk), and losing this state in
    a crash is harmless (the upload is still 'uploading', or expires). False: not open."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO off")
        return await transition(conn, upload_id, ["uploading"], "completing")


async def expired(db: Executor, limit: int = 100) -> list[asyncpg.Record]:
    """Unfinished uploads past their expiry (the housekeeper aborts them), including one
    whose completion was cut short by a crash (left 'completing')."""
    rows: Sequence[asyncpg.Record] = await db.fetch(
        f"""SELECT {UPLOAD_COLUMNS} FROM video_uploads
             WHERE status IN ('uploading', 'completing') AND expires_at <= now()
             ORDER BY expires_at LIMIT $1""",
        limit,
    )
    return list(rows)
