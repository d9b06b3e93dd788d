"""Session advisory locks: held by the connection that took them until it unlocks or closes.

A key is a namespace in the top 16 bits and an id below it.
"""

from __future__ import annotations

import asyncpg

# One publisher per live, across every streamd process (ingest.gate).
_PUBLISH_NAMESPACE = 0x5354 << 48


async def try_lock_publish(conn: asyncpg.Connection, live_id: int) -> bool:
    """Take the publish lock of ``live_id`` on ``conn`` unless any session holds it."""
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_lock($1)", _PUBLISH_NAMESPACE | live_id)
    )


async def unlock_publish(conn: asyncpg.Connection, live_id: int) -> None:
    """Release the publish lock of ``live_id`` that ``conn`` holds."""
    await conn.execute("SELECT pg_advisory_unlock($1)", _PUBLISH_NAMESPACE | live_id)
