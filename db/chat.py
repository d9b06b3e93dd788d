"""Queries of the live chat: messages, tickets, moderators, sanctions, the moderation record and
viewer reports. Every chat event between processes goes through NOTIFY on :data:`CHANNEL`.

A NOTIFY payload is a JSON array of events (``{"t": "msg" | "del" | "sanction" | "room", ...}``)
under PostgreSQL's 8000-byte limit. NOTIFYs are sent inside the statement that writes the rows,
so a rolled-back write is never announced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from db.types import Executor

CHANNEL = "chat"

# Messages are packed into one NOTIFY while the *estimated* payload of the group stays below
# BUCKET_BYTES. The estimate of one message (2 x its UTF-8 size, for JSON escaping, plus
# EVENT_OVERHEAD for the envelope) is at most 2 x 2000 + 300 bytes for a 500-character text, so
# a group (< BUCKET_BYTES plus one message) is always below the 8000-byte limit.
BUCKET_BYTES = 3500
EVENT_OVERHEAD = 300
HISTORY = 50

_MESSAGE_EVENT = """json_build_object(
    't', 'msg', 'id', m.id, 'live_id', m.live_id, 'user_id', m.user_id,
    'username', u.username, 'text', m.content, 'created_at', m.created_at, 'tip', m.tip)"""


async def insert_messages(
    db: Executor, live_ids: Sequence[int], user_ids: Sequence[int], texts: Sequence[str]
) -> list[asyncpg.Record]:
    """Insert a batch of messages and NOTIFY them, in one statement (one transaction).

    Returns ``(id, created_at)`` per message, in the order given.
    """
    rows = await db.fetch(
        f"""WITH m AS (
                INSERT INTO chat_messages (live_id, user_id, content)
                SELECT l, u, c
                FROM unnest($1::bigint[], $2::bigint[], $3::text[]) WITH ORDINALITY AS t(l, u, c, n)
                ORDER BY n
                RETURNING id, live_id, user_id, content, created_at, tip),
            ev AS (
                SELECT m.id, m.created_at, {_MESSAGE_EVENT} AS e,
                       sum(2 * octet_length(m.content) + {EVENT_OVERHEAD})
                           OVER (ORDER BY m.id) / {BUCKET_BYTES} AS bucket
                FROM m LEFT JOIN users u ON u.id = m.user_id),
            sent AS (
                SELECT pg_notify('{CHANNEL}', json_agg(e ORDER BY id)::text) FROM ev
                GROUP BY bucket)
            SELECT id, created_at, (SELECT count(*) FROM sent) AS notifies
            FROM ev ORDER BY id""",
        list(live_ids),
        list(user_ids),
        list(texts),
    )
    return list(rows)


async def insert_tip(
    db: Executor, *, live_id: int, user_id: int, order_id: int, text: str, tip: dict[str, Any]
) -> int | None:
    """Post a paid tip to its live's chat and NOTIFY it (at commit, when called in the
    capture's transaction); None when this order's tip was posted before."""
    message_id = await db.fetchval(
        """INSERT INTO chat_messages (live_id, user_id, content, tip, order_id)
           VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (order_id) DO NOTHING RETURNING id""",
        live_id, user_id, text, json.dumps(tip), order_id,
    )  # fmt: skip
    if message_id is None:
        return None
    await db.execute(
        f"""SELECT pg_notify('{CHANNEL}', json_build_array({_MESSAGE_EVENT})::text)
              FROM chat_messages m LEFT JOIN users u ON u.id = m.user_id WHERE m.id = $1""",
        message_id,
    )
    return int(message_id)


async def notify(db: Executor, events: Sequence[dict[str, Any]]) -> None:
    """NOTIFY small control events (tombstones, sanctions), one payload."""
    payload = json.dumps(list(events), separators=(",", ":"))
    await db.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def recent_messages(db: Executor, live_id: int, limit: int = HISTORY) -> list[asyncpg.Record]:
    """The last ``limit`` messages of a room that are not deleted, oldest first."""
    rows = await db.fetch(
        """SELECT * FROM (
               SELECT m.id, m.live_id, m.user_id, u.username, m.content, m.created_at, m.tip
               FROM chat_messages m LEFT JOIN users u ON u.id = m.user_id
               WHERE m.live_id = $1 AND m.deleted_at IS NULL
               ORDER BY m.id DESC LIMIT $2) r
           ORDER BY id""",
        live_id,
        limit,
    )
    return list(rows)


async def messages_after(
    db: Executor, live_ids: Sequence[int], after_ids: Sequence[int], limit: int
) -> list[asyncpg.Record]:
    """Messages of each room with an id above that room's ``after_id`` (what a hub missed
    while it was disconnected), oldest first, at most ``limit`` per room."""
    rows = await db.fetch(
        """SELECT r.* FROM unnest($1::bigint[], $2::bigint[]) AS q(live_id, after_id)
           CROSS JOIN LATERAL (
               SELECT m.id, m.live_id, m.user_id, u.username, m.content, m.created_at, m.tip
               FROM chat_messages m LEFT JOIN users u ON u.id = m.user_id
               WHERE m.live_id = q.live_id AND m.id > q.after_id AND m.deleted_at IS NULL
               ORDER BY m.id LIMIT $3) r
           ORDER BY r.id""",
        list(live_ids),
        list(after_ids),
        limit,
    )
    return list(rows)


async def deleted_among(db: Executor, message_ids: Sequence[int]) -> list[asyncpg.Record]:
    """(id, live_id) of the messages among ``message_ids`` that are deleted: tombstones a hub
    may have missed while it was disconnected."""
    rows = await db.fetch(
        "SELECT id, live_id FROM chat_messages WHERE id = ANY($1::bigint[]) "
        "AND deleted_at IS NOT NULL ORDER BY id",
        list(message_ids),
    )
    return list(rows)


async def room_settings(db: Executor, live_id: int) -> asyncpg.Record | None:
    """(owner_id, chat_enabled, chat_slow_mode_s, viewer_count) of a live."""
    return await db.fetchrow(
        """SELECT user_id AS owner_id, chat_enabled, chat_slow_mode_s, viewer_count
           FROM lives WHERE id = $1""",
        live_id,
    )


async def active_sanctions(db: Executor, live_id: int) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            """SELECT user_id, kind, until FROM chat_sanctions
               WHERE live_id = $1 AND until > now()""",
            live_id,
        )
    )


async def moderator_ids(db: Executor, live_id: int) -> set[int]:
    rows = await db.fetch("SELECT user_id FROM chat_moderators WHERE live_id = $1", live_id)
    return {int(r["user_id"]) for r in rows}


# --- tickets ---


async def create_ticket(
    db: Executor, *, digest: bytes, live_id: int, user_id: int, session_id: UUID, ttl_s: float
) -> None:
    """A ticket of ``user_id``'s login session ``session_id``: it dies with the session."""
    await db.execute(
        """INSERT INTO chat_tickets (digest, live_id, user_id, session_id, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
        digest,
        live_id,
        user_id,
        session_id,
        ttl_s,
    )


async def use_ticket(db: Executor, *, digest: bytes, live_id: int) -> asyncpg.Record | None:
    """Consume a ticket (it is deleted whatever its state); the user when it was valid for this
    live, not expired, its session still open, and the account active."""
    return await db.fetchrow(
        """WITH t AS (DELETE FROM chat_tickets WHERE digest = $1
                      RETURNING live_id, user_id, session_id, expires_at)
           SELECT u.id, u.username, u.role
           FROM t JOIN users u ON u.id = t.user_id
                  JOIN auth_sessions s ON s.id = t.session_id AND s.user_id = t.user_id
           WHERE t.live_id = $2 AND t.expires_at > now() AND u.is_active
             AND s.revoked_at IS NULL AND s.expires_at > now()""",
        digest,
        live_id,
    )


async def delete_expired_tickets(db: Executor) -> int:
    status = await db.execute("DELETE FROM chat_tickets WHERE expires_at <= now()")
    return int(status.rsplit(" ", 1)[1])


# --- moderation ---

_IS_MODERATOR = """EXISTS (SELECT 1 FROM chat_moderators cm
                          WHERE cm.live_id = $1 AND cm.user_id = u.id) AS is_moderator"""


async def member(db: Executor, *, live_id: int, user_id: int) -> asyncpg.Record | None:
    """What moderation rules need of a user in a room: (user_id, role, is_moderator), as
    :func:`message_author` gives them; None when there is no such user."""
    return await db.fetchrow(
        f"SELECT u.id AS user_id, u.role, {_IS_MODERATOR} FROM users u WHERE u.id = $2",
        live_id,
        user_id,
    )


async def message_author(db: Executor, *, live_id: int, message_id: int) -> asyncpg.Record | None:
    """The author of a message of this room that is not deleted: (user_id, role, is_moderator),
    user_id and role NULL when the account is gone; None when there is no such message."""
    return await db.fetchrow(
        f"""SELECT m.user_id, u.role, {_IS_MODERATOR}
            FROM chat_messages m LEFT JOIN users u ON u.id = m.user_id
            WHERE m.id = $2 AND m.live_id = $1 AND m.deleted_at IS NULL""",
        live_id,
        message_id,
    )


async def delete_message(
    db: Executor, *, live_id: int, message_id: int, actor_id: int
) -> asyncpg.Record | None:
    """Mark a message deleted, record it and NOTIFY the tombstone; None when there is no such
    message in this room (or it is already deleted)."""
    return await db.fetchrow(
        f"""WITH d AS (
                UPDATE chat_messages SET deleted_at = now()
                WHERE id = $2 AND live_id = $1 AND deleted_at IS NULL
                RETURNING id, live_id, user_id),
            logged AS (
                INSERT INTO chat_moderation_log (live_id, actor_id, action, target_user_id,
                                                 message_id)
                SELECT live_id, $3, 'delete', user_id, id FROM d RETURNING id)
            SELECT d.id, pg_notify('{CHANNEL}', json_build_array(json_build_object(
                       't', 'del', 'live_id', d.live_id, 'id', d.id))::text) AS sent,
                   (SELECT count(*) FROM logged) AS logged
            FROM d""",
        live_id,
        message_id,
        actor_id,
    )


async def sanction(
    db: Executor, *, live_id: int, user_id: int, kind: str, duration_s: int, actor_id: int
) -> bool:
    """Mute or ban a user in a room for ``duration_s`` (0 lifts it); recorded and NOTIFYed.
    False when the user does not exist."""
    action = kind if duration_s > 0 else "un" + kind
    row = await db.fetchrow(
        f"""WITH target AS (SELECT id FROM users WHERE id = $2),
            s AS (
                INSERT INTO chat_sanctions (live_id, user_id, kind, until, created_by)
                SELECT $1, id, $3, now() + make_interval(secs => $4), $5 FROM target
                ON CONFLICT (live_id, user_id, kind) DO UPDATE
                    SET until = EXCLUDED.until, created_by = EXCLUDED.created_by,
                        created_at = now()
                RETURNING user_id, until),
            logged AS (
                INSERT INTO chat_moderation_log (live_id, actor_id, action, target_user_id,
                                                 duration_s)
                SELECT $1, $5, $6, user_id, $4 FROM s RETURNING id)
            SELECT s.user_id, (SELECT count(*) FROM logged) AS logged,
                   pg_notify('{CHANNEL}', json_build_array(json_build_object(
                       't', 'sanction', 'live_id', $1::bigint, 'user_id', s.user_id,
                       'kind', $3::text, 'until', s.until))::text) AS sent
            FROM s""",
        live_id,
        user_id,
        kind,
        float(duration_s),
        actor_id,
        action,
    )
    return row is not None


async def lift_sanctions(db: Executor, *, live_id: int, user_id: int, actor_id: int) -> list[str]:
    """End a user's mute and ban in a room now, each recorded (``unmute``, ``unban``) and
    NOTIFYed as a sanction ending now, as ``sanction`` with a duration of 0 does. The kinds
    lifted, ``[]`` when the user had none in force."""
    rows = await db.fetch(
        f"""WITH s AS (
                UPDATE chat_sanctions SET until = now(), created_by = $3, created_at = now()
                WHERE live_id = $1 AND user_id = $2 AND until > now()
                RETURNING kind, until),
            logged AS (
                INSERT INTO chat_moderation_log (live_id, actor_id, action, target_user_id,
                                                 duration_s)
                SELECT $1, $3, 'un' || kind, $2, 0 FROM s ORDER BY kind RETURNING id),
            sent AS (
                SELECT pg_notify('{CHANNEL}', json_agg(json_build_object(
                    't', 'sanction', 'live_id', $1::bigint, 'user_id', $2::bigint,
                    'kind', kind, 'until', until) ORDER BY kind)::text) AS n
                FROM s)
            SELECT kind, (SELECT count(*) FROM logged) AS logged, (SELECT n FROM sent) AS sent
            FROM s ORDER BY kind""",
        live_id,
        user_id,
        actor_id,
    )
    return [str(r["kind"]) for r in rows]


async def set_slow_mode(db: Executor, *, live_id: int, seconds: int, actor_id: int) -> None:
    """Set the room's slow mode (0: off); the lives trigger NOTIFYs every process."""
    await db.execute(
        """WITH u AS (UPDATE lives SET chat_slow_mode_s = $2 WHERE id = $1 RETURNING id)
           INSERT INTO chat_moderation_log (live_id, actor_id, action, duration_s)
           SELECT id, $3, 'slow_mode', $2 FROM u""",
        live_id,
        seconds,
        actor_id,
    )


async def add_moderator(db: Executor, *, live_id: int, user_id: int, actor_id: int) -> bool:
    """Name a moderator of a room; False when the user does not exist."""
    row = await db.fetchrow(
        f"""WITH target AS (SELECT id FROM users WHERE id = $2),
            ins AS (
                INSERT INTO chat_moderators (live_id, user_id) SELECT $1, id FROM target
                ON CONFLICT DO NOTHING RETURNING user_id),
            logged AS (
                INSERT INTO chat_moderation_log (live_id, actor_id, action, target_user_id)
                SELECT $1, $3, 'add_moderator', user_id FROM ins RETURNING id)
            SELECT target.id, (SELECT count(*) FROM logged) AS logged,
                   pg_notify('{CHANNEL}', json_build_array(json_build_object(
                       't', 'moderator', 'live_id', $1::bigint, 'user_id', target.id,
                       'on', true))::text) AS sent
            FROM target""",
        live_id,
        user_id,
        actor_id,
    )
    return row is not None


async def remove_moderator(db: Executor, *, live_id: int, user_id: int, actor_id: int) -> bool:
    """False when the user was not a moderator of the room."""
    row = await db.fetchrow(
        f"""WITH d AS (DELETE FROM chat_moderators WHERE live_id = $1 AND user_id = $2
                       RETURNING user_id),
            logged AS (
                INSERT INTO chat_moderation_log (live_id, actor_id, action, target_user_id)
                SELECT $1, $3, 'remove_moderator', user_id FROM d RETURNING id)
            SELECT d.user_id, (SELECT count(*) FROM logged) AS logged,
                   pg_notify('{CHANNEL}', json_build_array(json_build_object(
                       't', 'moderator', 'live_id', $1::bigint, 'user_id', d.user_id,
                       'on', false))::text) AS sent
            FROM d""",
        live_id,
        user_id,
        actor_id,
    )
    return row is not None


async def moderation_log(db: Executor, live_id: int) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            """SELECT id, actor_id, action, target_user_id, message_id, duration_s, created_at
               FROM chat_moderation_log WHERE live_id = $1 ORDER BY id""",
            live_id,
        )
    )


# --- viewer counts ---


async def report_viewers(
    pool: asyncpg.Pool,
    *,
    process_id: UUID,
    live_ids: Sequence[int],
    counts: Sequence[int],
    stale_after_s: float,
) -> dict[int, int]:
    """Store this process's viewers per live (a zero deletes its row), forget reports older
    than ``stale_after_s`` (processes that stopped), write each changed total and its peak on
    the live, and return the totals of every live with viewers or a non-zero stored count."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """WITH given AS (SELECT * FROM unnest($2::bigint[], $3::int[]) AS g(live_id, n)),
                gone AS (DELETE FROM chat_viewer_reports r
                         WHERE (r.process_id = $1 AND NOT EXISTS (
                                    SELECT 1 FROM given WHERE given.live_id = r.live_id
                                    AND given.n > 0))
                            OR r.reported_at < now() - make_interval(secs => $4))
               INSERT INTO chat_viewer_reports AS r (process_id, live_id, viewers, reported_at)
               SELECT $1, g.live_id, g.n, now() FROM given g JOIN lives l ON l.id = g.live_id
               WHERE g.n > 0
               ON CONFLICT (process_id, live_id) DO UPDATE
                   SET viewers = EXCLUDED.viewers, reported_at = EXCLUDED.reported_at""",
            process_id,
            list(live_ids),
            list(counts),
            stale_after_s,
        )
        rows = await conn.fetch(
            """WITH totals AS (
                   SELECT live_id, sum(viewers)::bigint AS n FROM chat_viewer_reports
                   WHERE reported_at >= now() - make_interval(secs => $1) GROUP BY live_id),
               current AS (
                   SELECT l.id, coalesce(t.n, 0) AS n FROM lives l
                   LEFT JOIN totals t ON t.live_id = l.id
                   WHERE l.id IN (SELECT live_id FROM totals) OR l.viewer_count > 0
                   ORDER BY l.id FOR NO KEY UPDATE OF l),
               changed AS (
                   UPDATE lives l SET viewer_count = c.n,
                       peak_viewer_count = greatest(l.peak_viewer_count, c.n)
                   FROM current c WHERE l.id = c.id AND l.viewer_count <> c.n)
               SELECT id, n FROM current""",
            stale_after_s,
        )
    return {int(r["id"]): int(r["n"]) for r in rows}
