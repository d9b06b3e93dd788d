"""Queries on ``users``."""

from __future__ import annotations

import asyncpg

from db.types import Executor

USER_COLUMNS = (
    "id, username, email, avatar, bio, role, is_active, email_verified_at, created_at, updated_at"
)


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


async def get_by_id(db: Executor, user_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)


async def get_by_email(db: Executor, email: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
    )


async def get_login(db: Executor, name_or_email: str) -> asyncpg.Record | None:
    """The account a login names, by username or email (case-insensitive), with its hash."""
    return await db.fetchrow(
        f"""SELECT {USER_COLUMNS}, password_hash FROM users
            WHERE lower(username) = lower($1) OR lower(email) = lower($1)
            ORDER BY lower(username) = lower($1) DESC LIMIT 1""",
        name_or_email,
    )


async def get_password_hash(db: Executor, user_id: int) -> str | None:
    value = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    return None if value is None else str(value)


async def set_password_hash(db: Executor, user_id: int, password_hash: str) -> None:
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def update_profile(
    db: Executor, user_id: int, *, changes: dict[str, str | None]
) -> asyncpg.Record | None:
    """Set ``bio`` and/or ``avatar`` (the keys present in ``changes``; None clears)."""
    allowed = {"bio", "avatar"}
    if not changes.keys() <= allowed:
        raise ValueError(f"only {sorted(allowed)} can be changed here")
    return await db.fetchrow(
        f"""UPDATE users SET
                bio = CASE WHEN $2 THEN $3 ELSE bio END,
                avatar = CASE WHEN $4 THEN $5 ELSE avatar END
            WHERE id = $1 RETURNING {USER_COLUMNS}""",
        user_id,
        "bio" in changes,
        changes.get("bio"),
        "avatar" in changes,
        changes.get("avatar"),
    )


async def mark_email_verified(db: Executor, user_id: int, email: str) -> asyncpg.Record | None:
    """Verified only if the address is still the one the token was sent to."""
    return await db.fetchrow(
        f"""UPDATE users SET email_verified_at = coalesce(email_verified_at, now())
            WHERE id = $1 AND lower(email) = lower($2) RETURNING {USER_COLUMNS}""",
        user_id,
        email,
    )


async def set_role_and_active(
    db: Executor, user_id: int, *, role: str | None, is_active: bool | None
) -> asyncpg.Record | None:
    """Admin changes; a None argument leaves that column as it is."""
    return await db.fetchrow(
        f"""UPDATE users SET role = coalesce($2, role), is_active = coalesce($3, is_active)
            WHERE id = $1 RETURNING {USER_COLUMNS}""",
        user_id,
        role,
        is_active,
    )


async def list_page(
    db: Executor, *, before_id: int | None, limit: int, role: str | None, active: bool | None
) -> list[asyncpg.Record]:
    """Users newest first, ``limit`` of them with an id below ``before_id`` (the cursor)."""
    return await db.fetch(
        f"""SELECT {USER_COLUMNS} FROM users
            WHERE ($1::bigint IS NULL OR id < $1)
              AND ($2::text IS NULL OR role = $2)
              AND ($3::boolean IS NULL OR is_active = $3)
            ORDER BY id DESC LIMIT $4""",
        before_id,
        role,
        active,
        limit,
    )
