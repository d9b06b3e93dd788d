"""``email_outbox``: mail kept in the database when no SMTP server is configured."""

from __future__ import annotations

import asyncpg

from db.types import Executor


async def add(db: Executor, *, to_address: str, subject: str, body: str, kind: str) -> int:
    value = await db.fetchval(
        """INSERT INTO email_outbox (to_address, subject, body, kind)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        to_address,
        subject,
        body,
        kind,
    )
    return int(value)


async def latest_for(db: Executor, to_address: str, *, kind: str | None = None
                     ) -> asyncpg.Record | None:  # fmt: skip
    """The newest message to an address (of one kind when given): for tests and operators
    (``streamd mail show``)."""
    return await db.fetchrow(
        """SELECT id, to_address, subject, body, kind, created_at FROM email_outbox
           WHERE lower(to_address) = lower($1) AND ($2::text IS NULL OR kind = $2)
           ORDER BY id DESC LIMIT 1""",
        to_address,
        kind,
    )


async def delete_older_than(db: Executor, seconds: float) -> int:
    status = await db.execute(
        "DELETE FROM email_outbox WHERE created_at < now() - make_interval(secs => $1)", seconds
    )
    return int(status.split()[-1])
