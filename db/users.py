"""Queries on ``users``."""

from __future__ import annotations

import asyncpg

from db.types import Executor

USER_COLUMNS = "id, username, email, avatar, bio, role, is_active, created_at, updated_at"


async def create(
    db: Executor, *, username: str, email: str, password_hash: str, role: str
) -> asyncpg.Record:
    """Insert a user; raises asyncpg.UniqueViolationError when the name or email is taken."""
    row = await db.fetchrow(
        f"""INSERT INTO users (username, email, password_hash, role)
            VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}""",
        username,
        email,
        password_hash,
        role,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def get_by_username(db: Executor, username: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)", username
    )
