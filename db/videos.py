"""Queries on ``videos`` (the recordings of lives, so far; uploads come with the VOD issue)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from db.types import Connection, Executor

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
    v.hls_master_url, v.hls_key, v.duration, v.created_at, v.price_amount, v.price_currency,
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


# --- uploads, the owner's view, search (issue #17) ---

OWNER_COLUMNS = """v.id, v.title, v.description, v.user_id, u.username, v.thumbnail_url,
    v.thumbnail_key, v.hls_master_url, v.hls_key, v.duration, v.created_at, v.status,
    v.visibility, v.processing_progress, v.processing_stage, v.eta_seconds, v.error_message,
    v.views, v.likes, v.file_size, v.storyboard_key, v.output_prefix, v.original_key,
    v.job_id, u.is_active, v.price_amount, v.price_currency,
    (SELECT r.live_id FROM live_recordings r WHERE r.video_id = v.id
     ORDER BY r.id LIMIT 1) AS live_id"""
PROGRESS_CHANNEL = "video_progress"
# The expression of videos_simple_fulltext_idx (migration 0008): the index serves it as is.
_DOCUMENT = "to_tsvector('simple'::regconfig, v.title || ' ' || coalesce(v.description, ''))"


async def create_upload(
    db: Executor, *, user_id: int, title: str, description: str | None, visibility: str,
    original_format: str,
) -> int:  # fmt: skip
    """A video waiting for its upload (status 'uploading')."""
    video_id = await db.fetchval(
        """INSERT INTO videos (title, description, user_id, visibility, original_format, status,
                               processing_stage)
           VALUES ($1, $2, $3, $4, $5, 'uploading', 'uploading') RETURNING id""",
        title, description, user_id, visibility, original_format,
    )  # fmt: skip
    return int(video_id)


async def get_full(db: Executor, video_id: int) -> asyncpg.Record | None:
    """Any video, whatever its status and visibility, with everything the API may show."""
    return await db.fetchrow(
        f"SELECT {OWNER_COLUMNS} FROM videos v JOIN users u ON u.id = v.user_id WHERE v.id = $1",
        video_id,
    )


def like_pattern(text: str) -> str:
    """``%text%`` for ILIKE with the user's own wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def cjk_bigrams(text: str, limit: int = 16) -> list[str]:
    """Overlapping character pairs of the non-ASCII runs of a query: Chinese has no spaces to
    split words on, so "直播精華" is matched by how many of 直播/播精/精華 a title holds."""
    pairs: list[str] = []
    for run in "".join(c if ord(c) > 0x2E7F else " " for c in text).split():
        pairs.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    return list(dict.fromkeys(pairs))[:limit]


async def has_trigrams(db: Executor) -> bool:
    return bool(
        await db.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')")
    )


async def search(
    db: Executor, *, q: str | None, username: str | None, viewer_id: int | None,
    is_admin: bool, status: str | None, visibility: str | None, sort: str, offset: int,
    limit: int, trigrams: bool,
) -> list[asyncpg.Record]:  # fmt: skip
    """Videos in one of three scopes. Everyone sees ready public videos of active accounts;
    the owner (``username`` is the viewer) and admins also see the rest of that user's
    videos, filtered by ``status``/``visibility``. Private and unlisted videos never show in
    anyone else's lists or searches.

    Search (``q``) matches full text ('simple' configuration: no stemming, any language), a
    substring of the title or description (what finds 直播 inside 週五直播精華: PostgreSQL's
    parsers do not split Chinese into words), trigram similarity of the title for typos where
    pg_trgm exists (Latin scripts), and half of the query's CJK character pairs for Chinese
    with a wrong character. Ranked by the full-text rank plus the substring and similarity
    scores; at the sizes one streamd holds, the substring match is a scan of the user's or
    the public videos, which the partial indexes keep small.
    """
    own_scope = username is not None and (is_admin or viewer_id is not None)
    pattern = like_pattern(q) if q else None
    bigrams = cjk_bigrams(q) if q else []
    similar = "similarity(v.title, $1)" if trigrams and q else "0"
    similar_match = "OR v.title % $1" if trigrams and q else ""
    rank = f"""(CASE WHEN $1::text IS NULL THEN 0 ELSE
        ts_rank({_DOCUMENT}, websearch_to_tsquery('simple'::regconfig, $1))
        + CASE WHEN v.title ILIKE $2 THEN 1.0 WHEN v.description ILIKE $2 THEN 0.3 ELSE 0 END
        + {similar}
        + coalesce((SELECT count(*) FROM unnest($3::text[]) b
                    WHERE v.title ILIKE '%' || b || '%'), 0)::float
          / greatest(cardinality($3::text[]), 1)
        END)"""
    order = {
        "popular": "v.views DESC, v.id DESC",
        "relevance": "rank DESC, v.id DESC",
    }.get(sort, "v.id DESC")
    rows: Sequence[asyncpg.Record] = await db.fetch(
        f"""SELECT {OWNER_COLUMNS}, {rank} AS rank
              FROM videos v JOIN users u ON u.id = v.user_id
             WHERE ($4::text IS NULL OR lower(u.username) = lower($4))
               AND (CASE WHEN $5::boolean
                         THEN (u.id = $6 OR $7::boolean)
                              AND ($8::text IS NULL OR v.status = $8)
                              AND ($9::text IS NULL OR v.visibility = $9)
                         ELSE v.status = 'ready' AND v.visibility = 'public' AND u.is_active
                    END)
               AND ($1::text IS NULL
                    OR {_DOCUMENT} @@ websearch_to_tsquery('simple'::regconfig, $1)
                    OR v.title ILIKE $2 OR v.description ILIKE $2
                    {similar_match}
                    OR (cardinality($3::text[]) > 0 AND
                        (SELECT count(*) FROM unnest($3::text[]) b
                          WHERE v.title ILIKE '%' || b || '%') * 2 >= cardinality($3::text[])))
             ORDER BY {order} OFFSET $10 LIMIT $11""",
        q, pattern, bigrams, username, own_scope, viewer_id, is_admin, status, visibility,
        offset, limit,
    )  # fmt: skip
    return list(rows)


async def update_details(
    db: Executor, video_id: int, *, title: str | None, description: str | None,
    set_description: bool, visibility: str | None, set_price: bool = False,
    price: tuple[int, str] | None = None,
) -> bool:  # fmt: skip
    """``set_price``: replace the price with ``price`` (None: free)."""
    row = await db.fetchrow(
        """UPDATE videos SET title = coalesce($2, title),
                  description = CASE WHEN $3 THEN $4 ELSE description END,
                  visibility = coalesce($5, visibility),
                  price_amount = CASE WHEN $6 THEN $7 ELSE price_amount END,
                  price_currency = CASE WHEN $6 THEN $8 ELSE price_currency END
            WHERE id = $1 RETURNING id""",
        video_id, title, set_description, description, visibility, set_price,
        price[0] if price else None, price[1] if price else None,
    )  # fmt: skip
    return row is not None


async def delete(conn: Connection, video_id: int) -> asyncpg.Record | None:
    """Delete the row (likes, views, qualities and uploads go with it); what it stored, for
    the purge job. None when it did not exist."""
    row = await conn.fetchrow(
        """DELETE FROM videos WHERE id = $1
           RETURNING id, output_prefix, original_key, hls_key, job_id""",
        video_id,
    )
    return row


async def like(db: Executor, video_id: int, user_id: int, on: bool) -> int:
    """Like or unlike (idempotent); the like count after."""
    if on:
        sql = """WITH ins AS (INSERT INTO video_likes (video_id, user_id) VALUES ($1, $2)
                              ON CONFLICT DO NOTHING RETURNING 1)
                 UPDATE videos SET likes = likes + (SELECT count(*) FROM ins)
                  WHERE id = $1 RETURNING likes"""
    else:
        sql = """WITH del AS (DELETE FROM video_likes WHERE video_id = $1 AND user_id = $2
                              RETURNING 1)
                 UPDATE videos SET likes = likes - (SELECT count(*) FROM del)
                  WHERE id = $1 RETURNING likes"""
    return int(await db.fetchval(sql, video_id, user_id) or 0)


async def liked(db: Executor, video_id: int, user_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM video_likes WHERE video_id = $1 AND user_id = $2)",
            video_id,
            user_id,
        )
    )


async def count_view(db: Executor, video_id: int, viewer: str, window_s: float) -> int:
    """Count a view unless this viewer's last counted view is within the window; the views."""
    return int(
        await db.fetchval(
            """WITH seen AS (
                   INSERT INTO video_views (video_id, viewer) VALUES ($1, $2)
                   ON CONFLICT (video_id, viewer) DO UPDATE SET counted_at = now()
                       WHERE video_views.counted_at < now() - make_interval(secs => $3)
                   RETURNING 1)
               UPDATE videos SET views = views + (SELECT count(*) FROM seen)
                WHERE id = $1 RETURNING views""",
            video_id,
            viewer,
            window_s,
        )
        or 0
    )


async def qualities(db: Executor, video_id: int) -> list[asyncpg.Record]:
    rows: Sequence[asyncpg.Record] = await db.fetch(
        "SELECT name, width, height, bitrate FROM video_qualities WHERE video_id = $1 "
        "ORDER BY height DESC",
        video_id,
    )
    return list(rows)


# --- the transcoding job's view of its video ---


async def mark_uploaded(
    conn: Connection, video_id: int, *, original_key: str, file_size: int, job_id: int
) -> None:
    await conn.execute(
        """UPDATE videos SET status = 'uploaded', original_key = $2, file_size = $3,
                  job_id = $4, processing_stage = 'queued', processing_progress = 0
            WHERE id = $1""",
        video_id, original_key, file_size, job_id,
    )  # fmt: skip


async def begin_run(db: Executor, video_id: int, run_token: str) -> asyncpg.Record | None:
    """Claim the video for one job attempt: it becomes 'processing' under ``run_token`` and
    its attempt count goes up. None when there is nothing to do (deleted, ready or failed)."""
    return await db.fetchrow(
        """UPDATE videos SET status = 'processing', run_token = $2,
                  job_attempts = job_attempts + 1, processing_stage = 'probing',
                  processing_progress = 0, eta_seconds = NULL, processing_started_at = now()
            WHERE id = $1 AND status IN ('uploaded', 'processing')
            RETURNING id, user_id, original_key, job_attempts, output_prefix""",
        video_id, run_token,
    )  # fmt: skip


async def set_progress(
    db: Executor, video_id: int, run_token: str, *, percent: int, stage: str,
    eta_seconds: int | None,
) -> int | None:  # fmt: skip
    """Store progress and NOTIFY it; the owner's id, or None when this run no longer owns the
    video (deleted, or taken over): the caller stops."""
    row = await db.fetchrow(
        """WITH up AS (
               UPDATE videos SET processing_progress = $3, processing_stage = $4,
                      eta_seconds = $5
                WHERE id = $1 AND run_token = $2 AND status = 'processing'
                RETURNING id, user_id, status, processing_progress, processing_stage,
                          eta_seconds)
           SELECT user_id, pg_notify($6, json_build_object(
                      'video_id', id, 'user_id', user_id, 'status', status,
                      'percent', processing_progress, 'stage', processing_stage,
                      'eta_seconds', eta_seconds, 'error_message', NULL)::text)
             FROM up""",
        video_id, run_token, percent, stage, eta_seconds, PROGRESS_CHANNEL,
    )  # fmt: skip
    return None if row is None else int(row["user_id"])


async def finish_run(
    conn: Connection, video_id: int, run_token: str, *, hls_key: str, hls_url: str,
    output_prefix: str, thumbnail_key: str | None, thumbnail_url: str | None,
    storyboard_key: str | None, duration: float, qualities: Sequence[tuple[str, int, int, int,
    str, str]],
) -> str | None:  # fmt: skip
    """Publish this run's output: the video becomes ready. Returns the previous output prefix
    (to delete) or "" when there was none; None when the run lost the video (its own output
    is then the one to delete)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE videos v SET status = 'ready', hls_key = $3, hls_master_url = $4,
                      output_prefix = $5, thumbnail_key = $6, thumbnail_url = $7,
                      storyboard_key = $8, duration = $9, processing_progress = 100,
                      processing_stage = 'ready', eta_seconds = NULL, error_message = NULL
                 FROM (SELECT id, output_prefix AS old FROM videos WHERE id = $1 FOR UPDATE) o
                WHERE v.id = o.id AND v.run_token = $2 AND v.status = 'processing'
                RETURNING coalesce(o.old, '') AS old, v.user_id""",
            video_id, run_token, hls_key, hls_url, output_prefix, thumbnail_key, thumbnail_url,
            storyboard_key, duration,
        )  # fmt: skip
        if row is None:
            return None
        await conn.execute("DELETE FROM video_qualities WHERE video_id = $1", video_id)
        await conn.executemany(
            """INSERT INTO video_qualities (video_id, name, width, height, bitrate, codecs,
                                            playlist_url)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [(video_id, *q) for q in qualities],
        )
        await _notify_state(conn, video_id)
        old: str = row["old"]
        return old


async def fail_run(db: Executor, video_id: int, run_token: str | None, message: str) -> bool:
    """Mark the video failed with a message for its owner (only while this run owns it, or
    any run when ``run_token`` is None)."""
    row = await db.fetchrow(
        """UPDATE videos SET status = 'failed', error_message = $3, processing_stage = 'failed',
                  eta_seconds = NULL
            WHERE id = $1 AND status IN ('uploaded', 'processing')
              AND ($2::text IS NULL OR run_token = $2)
            RETURNING id""",
        video_id, run_token, message[:2000],
    )  # fmt: skip
    if row is not None:
        await _notify_state(db, video_id)
    return row is not None


async def _notify_state(db: Executor, video_id: int) -> None:
    await db.execute(
        """SELECT pg_notify($2, json_build_object(
                  'video_id', id, 'user_id', user_id, 'status', status,
                  'percent', processing_progress, 'stage', processing_stage,
                  'eta_seconds', eta_seconds, 'error_message', error_message)::text)
             FROM videos WHERE id = $1""",
        video_id, PROGRESS_CHANNEL,
    )  # fmt: skip
