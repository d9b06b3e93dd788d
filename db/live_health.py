"""Stream-health samples of lives on air (the packager writes, the API reads, chat pushes)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from db.types import Executor

CHANNEL = "live_health"  # NOTIFY payload: {"live_id", "sample": {"at", ...}}
KEEP_S = 600  # the studio graphs the last 10 minutes
_NOTIFY_MAX = 7900  # PostgreSQL refuses payloads of 8000 bytes and more


async def record(db: Executor, live_ids: Sequence[int], samples: Sequence[str]) -> int:
    """Store one sample (JSON text) per live, each with the live's current viewer count, drop
    those lives' samples older than :data:`KEEP_S`, and NOTIFY each stored sample on
    :data:`CHANNEL`; one statement. Lives that no longer exist are skipped. Returns how many
    were stored."""
    row = await db.fetchrow(
        f"""WITH s AS (
                SELECT l.id AS live_id,
                       t.sample::jsonb || jsonb_build_object('viewer_count', l.viewer_count)
                           AS sample
                FROM unnest($1::bigint[], $2::text[]) AS t(live_id, sample)
                JOIN lives l ON l.id = t.live_id),
            ins AS (
                INSERT INTO live_health_samples (live_id, at, sample)
                SELECT live_id, now(), sample FROM s
                RETURNING live_id, at, sample),
            old AS (
                DELETE FROM live_health_samples
                WHERE live_id IN (SELECT live_id FROM s)
                  AND at < now() - make_interval(secs => {KEEP_S})),
            payloads AS (
                SELECT json_build_object(
                    'live_id', live_id,
                    'sample', jsonb_build_object('at', at) || sample)::text AS payload
                FROM ins),
            sent AS (
                SELECT pg_notify('{CHANNEL}', payload) FROM payloads
                WHERE octet_length(payload) <= {_NOTIFY_MAX})
            SELECT (SELECT count(*) FROM ins) AS stored, (SELECT count(*) FROM sent) AS sent""",
        list(live_ids),
        list(samples),
    )
    return int(row["stored"]) if row is not None else 0


async def recent(db: Executor, live_id: int) -> list[asyncpg.Record]:
    """``(at, sample)`` of the live's samples of the last :data:`KEEP_S` seconds, oldest
    first; ``sample`` is JSON text."""
    return await db.fetch(
        f"""SELECT at, sample::text AS sample FROM live_health_samples
            WHERE live_id = $1 AND at >= now() - make_interval(secs => {KEEP_S})
            ORDER BY at""",
        live_id,
    )


async def delete_old(db: Executor) -> int:
    """Delete every sample older than :data:`KEEP_S` (those of lives no longer on air stay
    until then, since only a new sample deletes its live's old ones)."""
    status = await db.execute(
        f"DELETE FROM live_health_samples WHERE at < now() - make_interval(secs => {KEEP_S})"
    )
    return int(status.rsplit(" ", 1)[-1])
