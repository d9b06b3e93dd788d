"""Queries on ``lives``."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from db.types import Executor

LIVE_COLUMNS = (
    "id, title, description, user_id, status, start_time, end_time, viewer_count, chat_enabled, "
    "created_at, updated_at, price_amount, price_currency"
)


def generate_stream_key() -> str:
    """192 random bits, URL-safe (pasted into OBS, sent in RTMP publish names)."""
    return secrets.token_urlsafe(24)


async def create(
    db: Executor,
    *,
    user_id: int,
    title: str,
    description: str | None = None,
    scheduled_start: datetime | None = None,
    chat_enabled: bool = True,
    price: tuple[int, str] | None = None,
) -> asyncpg.Record:
    """Insert a live with a fresh stream key; the row includes ``stream_key``.

    A live with a scheduled start is ``scheduled``; otherwise ``offline`` until a publish.
    """
    row = await db.fetchrow(
        f"""INSERT INTO lives (user_id, title, description, stream_key, scheduled_start,
                               chat_enabled, status, price_amount, price_currency)
            VALUES ($1, $2, $3, $4, $5, $6,
                    CASE WHEN $5::timestamptz IS NULL THEN 'offline' ELSE 'scheduled' END,
                    $7, $8)
            RETURNING {LIVE_COLUMNS}, scheduled_start, stream_key""",
        user_id,
        title,
        description,
        generate_stream_key(),
        scheduled_start,
        chat_enabled,
        price[0] if price else None,
        price[1] if price else None,
    )
    assert row is not None
    return row


# What the API shows of a live to anyone: never the stream key. ``owner_active`` lets the
# caller hide the lives of deactivated accounts.
PUBLIC_COLUMNS = (
    "l.id, l.title, l.description, l.user_id, u.username, l.status, l.scheduled_start, "
    "l.start_time, l.end_time, l.viewer_count, l.chat_enabled, l.thumbnail_url, l.created_at, "
    "l.updated_at, l.price_amount, l.price_currency, u.is_active AS owner_active"
)


async def get_public(db: Executor, live_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {PUBLIC_COLUMNS} FROM lives l JOIN users u ON u.id = l.user_id
            WHERE l.id = $1""",
        live_id,
    )


async def list_public(
    db: Executor,
    *,
    statuses: Sequence[str],
    username: str | None,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Lives of active accounts in ``statuses``, newest first, ids below ``before_id``."""
    return await db.fetch(
        f"""SELECT {PUBLIC_COLUMNS} FROM lives l JOIN users u ON u.id = l.user_id
            WHERE l.status = ANY($1::text[]) AND u.is_active
              AND ($2::text IS NULL OR lower(u.username) = lower($2))
              AND ($3::bigint IS NULL OR l.id < $3)
            ORDER BY l.id DESC LIMIT $4""",
        list(statuses),
        username,
        before_id,
        limit,
    )


async def list_by_owner(
    db: Executor, user_id: int, *, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Every live of one owner (all statuses), newest first."""
    return await db.fetch(
        f"""SELECT {PUBLIC_COLUMNS} FROM lives l JOIN users u ON u.id = l.user_id
            WHERE l.user_id = $1 AND ($2::bigint IS NULL OR l.id < $2)
            ORDER BY l.id DESC LIMIT $3""",
        user_id,
        before_id,
        limit,
    )


async def get_owner_and_key(db: Executor, live_id: int) -> asyncpg.Record | None:
    """(id, user_id, status, viewer_count, stream_key, owner_active): what permission checks
    need, and what the owner's health view shows."""
    return await db.fetchrow(
        """SELECT l.id, l.user_id, l.status, l.viewer_count, l.stream_key,
                  u.is_active AS owner_active
           FROM lives l JOIN users u ON u.id = l.user_id WHERE l.id = $1""",
        live_id,
    )


async def update(db: Executor, live_id: int, *, changes: dict[str, Any]) -> asyncpg.Record | None:
    """Change the keys present in ``changes`` (title, description, scheduled_start,
    chat_enabled, price: an (amount, currency) or None for free). Setting a scheduled start
    makes a live that is not on air ``scheduled``;
    clearing it makes a scheduled live ``offline`` again."""
    allowed = {"title", "description", "scheduled_start", "chat_enabled", "price"}
    price = changes.get("price")
    if not changes.keys() <= allowed:
        raise ValueError(f"only {sorted(allowed)} can be changed")
    return await db.fetchrow(
        f"""UPDATE lives l SET
                title = CASE WHEN $2 THEN $3 ELSE l.title END,
                description = CASE WHEN $4 THEN $5 ELSE l.description END,
                scheduled_start = CASE WHEN $6 THEN $7::timestamptz ELSE l.scheduled_start END,
                chat_enabled = CASE WHEN $8 THEN $9 ELSE l.chat_enabled END,
                price_amount = CASE WHEN $10 THEN $11 ELSE l.price_amount END,
                price_currency = CASE WHEN $10 THEN $12 ELSE l.price_currency END,
                status = CASE
                    WHEN NOT $6 OR l.status = 'live' THEN l.status
                    WHEN $7::timestamptz IS NOT NULL THEN 'scheduled'
                    WHEN l.status = 'scheduled' THEN 'offline'
                    ELSE l.status END
            FROM users u
            WHERE l.id = $1 AND u.id = l.user_id
            RETURNING {PUBLIC_COLUMNS}""",
        live_id,
        "title" in changes,
        changes.get("title"),
        "description" in changes,
        changes.get("description"),
        "scheduled_start" in changes,
        changes.get("scheduled_start"),
        "chat_enabled" in changes,
        bool(changes.get("chat_enabled")),
        "price" in changes,
        price[0] if price else None,
        price[1] if price else None,
    )


async def delete_unless_live(db: Executor, live_id: int) -> bool:
    """Delete a live that is not on air; False when it is on air (or gone)."""
    status = await db.execute("DELETE FROM lives WHERE id = $1 AND status <> 'live'", live_id)
    return bool(status == "DELETE 1")


async def rotate_stream_key(db: Executor, live_id: int) -> str:
    """A new key; the old one stops matching any live, so new publishes with it are refused
    (a publish already running on the old key is not cut by this)."""
    key = await db.fetchval(
        "UPDATE lives SET stream_key = $2 WHERE id = $1 RETURNING stream_key",
        live_id,
        generate_stream_key(),
    )
    return str(key)


async def live_ids_of_user(db: Executor, user_id: int) -> list[int]:
    rows = await db.fetch("SELECT id FROM lives WHERE user_id = $1 AND status = 'live'", user_id)
    return [int(r["id"]) for r in rows]


LIVE_CONTROL_CHANNEL = "live_control"


async def request_stop(db: Executor, live_id: int, reason: str) -> None:
    """Mark a live ended and tell every process (NOTIFY ``live_control``) to end its publish.

    The process that holds the publisher is the one that can cut it; an ingest process that
    LISTENs on ``live_control`` does so. The status is ended either way.
    """
    await db.execute(
        f"""WITH u AS (
                UPDATE lives SET status = 'ended', end_time = now()
                WHERE id = $1 AND status = 'live' RETURNING id, status)
            SELECT pg_notify('{LIVE_STATUS_CHANNEL}',
                             json_build_object('live_id', id, 'status', status)::text)
            FROM u
            UNION ALL
            SELECT pg_notify('{LIVE_CONTROL_CHANNEL}',
                             json_build_object('live_id', $1::bigint, 'action', 'stop',
                                               'reason', left($2, 200))::text)""",
        live_id,
        reason,
    )


LIVE_STATUS_CHANNEL = "live_status"


async def get_publish_target(db: Executor, stream_key: str) -> asyncpg.Record | None:
    """The live a stream key publishes to, with what ingest must check about its owner
    (``owner_active``, ``owner_role``)."""
    return await db.fetchrow(
        """SELECT l.id, l.stream_key, l.status, l.user_id, u.username, u.is_active AS owner_active,
                  u.role AS owner_role
           FROM lives l JOIN users u ON u.id = l.user_id
           WHERE l.stream_key = $1""",
        stream_key,
    )


async def mark_live(
    db: Executor, live_id: int, streaming_roles: Sequence[str] = ("creator", "admin")
) -> bool:
    """A broadcast starts (a live is a reusable room: an ended live goes live again), if its
    owner is still active with one of ``streaming_roles``; False (nothing changed) otherwise.

    The owner's row is read ``FOR SHARE``: a demotion or deactivation committed before this
    statement is seen here, and one that comes later waits for this one, so its stop of the
    owner's lives on air finds this live. A publisher coming back within the reconnect window
    finds the live still 'live': its start time is kept, the broadcast continues."""
    row = await db.fetchrow(
        f"""WITH owner AS (
                SELECT u.id FROM users u JOIN lives l ON l.user_id = u.id
                WHERE l.id = $1 AND u.is_active AND u.role = ANY($2::text[])
                FOR SHARE OF u),
            u AS (
                UPDATE lives SET status = 'live', end_time = NULL,
                    start_time = CASE WHEN status = 'live' THEN start_time ELSE now() END
                WHERE id = $1 AND user_id IN (SELECT id FROM owner) RETURNING id, status)
            SELECT pg_notify('{LIVE_STATUS_CHANNEL}',
                             json_build_object('live_id', id, 'status', status)::text)
            FROM u""",
        live_id,
        list(streaming_roles),
    )
    return row is not None


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
