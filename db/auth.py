"""Login sessions, their rotating refresh tokens, trusted devices, and one-time email tokens.

A session is one login. Each refresh token is good for one use: using it marks it used and
issues its successor in the same session. A used token presented again means it was copied:
the whole session is revoked (its refresh tokens and, through the ``sid`` claim, its access
tokens); except within a short grace after its use, when the caller answers with the pair it
issued then (a client retrying after a network error). Tokens arrive here already hashed:
callers pass SHA-256 digests, never the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from db.types import Executor

RevokeReason = Literal[
    "logout", "logout_everywhere", "refresh_reuse", "password_changed", "password_reset",
    "deactivated", "password_guesses",
]  # fmt: skip
RotateOutcome = Literal[
    "rotated", "replayed", "unknown", "expired", "revoked", "reused", "inactive"
]


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotateOutcome
    user_id: int | None = None
    session_id: UUID | None = None
    role: str | None = None  # "rotated": the role to put in the new access token
    successor: bytes | None = None  # "replayed": what keep_successor stored at the first use


async def create_session(
    db: Executor,
    *,
    user_id: int,
    token_hash: bytes,
    ttl: float,
    user_agent: str | None,
    ip: str | None,
) -> UUID:
    """Start a session with its first refresh token; returns the session id."""
    session_id = await db.fetchval(
        """WITH s AS (
               INSERT INTO auth_sessions (user_id, expires_at, user_agent, ip)
               VALUES ($1, now() + make_interval(secs => $3), $4, $5)
               RETURNING id, expires_at)
           INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
           SELECT $2, id, expires_at FROM s RETURNING session_id""",
        user_id,
        token_hash,
        ttl,
        user_agent,
        ip,
    )
    assert isinstance(session_id, UUID)
    return session_id


async def rotate_refresh_token(
    conn: asyncpg.Connection | PoolConnectionProxy,
    *,
    token_hash: bytes,
    new_hash: bytes,
    ttl: float,
    grace_s: float,
) -> Rotation:
    """Use a refresh token once: on success its successor ``new_hash`` is stored.

    Must run inside the caller's transaction: the token and session rows stay locked until it
    ends, so uses of one token at once are serialised, and the caller stores the new pair
    (:func:`keep_successor`) before the next use reads it. A use within ``grace_s`` of the
    first is "replayed" (the stored pair comes back); a later one is a reuse and revokes the
    session.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("rotate_refresh_token needs the caller's transaction")
    row = await conn.fetchrow(
        """SELECT t.session_id, t.used_at, t.expires_at > now() AS fresh, t.successor,
                  t.used_at > now() - make_interval(secs => $2) AS in_grace,
                  s.user_id, s.revoked_at, u.is_active, u.role
           FROM refresh_tokens t
           JOIN auth_sessions s ON s.id = t.session_id
           JOIN users u ON u.id = s.user_id
           WHERE t.token_hash = $1
           FOR UPDATE OF t, s""",
        token_hash,
        grace_s,
    )
    if row is None:
        return Rotation("unknown")
    user_id, session_id = int(row["user_id"]), row["session_id"]
    if row["revoked_at"] is not None:
        return Rotation("revoked", user_id, session_id)
    if row["used_at"] is not None:
        if row["in_grace"] and row["successor"] is not None and row["is_active"]:
            return Rotation("replayed", user_id, session_id, successor=bytes(row["successor"]))
        await _revoke(conn, session_id, "refresh_reuse")
        return Rotation("reused", user_id, session_id)
    if not row["fresh"]:
        return Rotation("expired", user_id, session_id)
    if not row["is_active"]:
        return Rotation("inactive", user_id, session_id)
    await conn.execute(
        """WITH used AS (
               UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1),
           s AS (
               UPDATE auth_sessions SET expires_at = now() + make_interval(secs => $4)
               WHERE id = $3)
           INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
           VALUES ($2, $3, now() + make_interval(secs => $4))""",
        token_hash,
        new_hash,
        session_id,
        ttl,
    )
    return Rotation("rotated", user_id, session_id, role=str(row["role"]))


async def keep_successor(db: Executor, *, token_hash: bytes, sealed: bytes) -> None:
    """Store the new pair of a just-rotated token (sealed by the caller) for the grace."""
    await db.execute(
        "UPDATE refresh_tokens SET successor = $2 WHERE token_hash = $1", token_hash, sealed
    )


async def _revoke(db: Executor, session_id: UUID, reason: RevokeReason) -> None:
    await db.execute(
        """UPDATE auth_sessions SET revoked_at = now(), revoke_reason = $2
           WHERE id = $1 AND revoked_at IS NULL""",
        session_id,
        reason,
    )


async def revoke_session(
    db: Executor, session_id: UUID, *, user_id: int, reason: RevokeReason
) -> bool:
    """Revoke one of ``user_id``'s sessions; False when it is not theirs or already ended."""
    status = await db.execute(
        """UPDATE auth_sessions SET revoked_at = now(), revoke_reason = $3
           WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL""",
        session_id,
        user_id,
        reason,
    )
    return bool(status == "UPDATE 1")


async def session_of_refresh_token(db: Executor, token_hash: bytes) -> UUID | None:
    value = await db.fetchval(
        "SELECT session_id FROM refresh_tokens WHERE token_hash = $1", token_hash
    )
    return value if isinstance(value, UUID) else None


async def revoke_user_sessions(db: Executor, user_id: int, *, reason: RevokeReason) -> int:
    """End every session of a user (password change, deactivation, logout everywhere)."""
    status = await db.execute(
        """UPDATE auth_sessions SET revoked_at = now(), revoke_reason = $2
           WHERE user_id = $1 AND revoked_at IS NULL""",
        user_id,
        reason,
    )
    return int(status.split()[-1])


async def get_session_user(
    db: Executor, *, user_id: int, session_id: UUID
) -> asyncpg.Record | None:
    """The user behind an access token, if the token's session is still open and the user
    active; None otherwise. One primary-key lookup per authenticated request."""
    return await db.fetchrow(
        """SELECT u.id, u.username, u.email, u.role
           FROM auth_sessions s JOIN users u ON u.id = s.user_id
           WHERE s.id = $2 AND s.user_id = $1 AND s.revoked_at IS NULL AND u.is_active""",
        user_id,
        session_id,
    )


# --- devices that signed in before (OWASP device cookies) ---


async def add_device(db: Executor, *, digest: bytes, user_id: int, ttl: float, keep: int) -> None:
    """Trust a device for ``user_id``; the account keeps its ``keep`` most recently used."""
    await db.execute(
        """WITH added AS (
               INSERT INTO trusted_devices (digest, user_id, expires_at)
               VALUES ($1, $2, now() + make_interval(secs => $3)))
           DELETE FROM trusted_devices WHERE digest IN (
               SELECT digest FROM trusted_devices WHERE user_id = $2
               ORDER BY last_used_at DESC OFFSET $4)""",
        digest,
        user_id,
        ttl,
        keep - 1,  # the statement does not see the row it adds
    )


async def is_trusted_device(db: Executor, *, digest: bytes, user_id: int) -> bool:
    return bool(
        await db.fetchval(
            """SELECT EXISTS (SELECT FROM trusted_devices
                              WHERE digest = $1 AND user_id = $2 AND expires_at > now())""",
            digest,
            user_id,
        )
    )


async def touch_device(db: Executor, *, digest: bytes, ttl: float) -> None:
    """A successful login from a trusted device: it stays trusted ``ttl`` from now."""
    await db.execute(
        """UPDATE trusted_devices
           SET last_used_at = now(), expires_at = now() + make_interval(secs => $2)
           WHERE digest = $1""",
        digest,
        ttl,
    )


async def forget_devices(db: Executor, user_id: int) -> None:
    """A new password: no device is known any more (one may have been the attacker's)."""
    await db.execute("DELETE FROM trusted_devices WHERE user_id = $1", user_id)


# --- one-time tokens sent by email ---

AccountTokenPurpose = Literal["verify_email", "reset_password"]


async def create_account_token(
    db: Executor,
    *,
    user_id: int,
    purpose: AccountTokenPurpose,
    email: str,
    token_hash: bytes,
    ttl: float,
) -> None:
    await db.execute(
        """INSERT INTO account_tokens (token_hash, user_id, purpose, email, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
        token_hash,
        user_id,
        purpose,
        email,
        ttl,
    )


async def use_account_token(
    db: Executor, *, token_hash: bytes, purpose: AccountTokenPurpose
) -> asyncpg.Record | None:
    """Consume a one-time token: (user_id, email) if it was unused and unexpired, else None."""
    return await db.fetchrow(
        """UPDATE account_tokens SET used_at = now()
           WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
           RETURNING user_id, email""",
        token_hash,
        purpose,
    )


async def delete_expired(
    db: Executor, *, grace_s: float = 0.0, keep_revoked_s: float = 86400.0
) -> int:
    """Housekeeping: sessions and tokens that can no longer be used (revoked sessions are kept
    ``keep_revoked_s`` for inspection), and kept pairs of refresh tokens past the grace."""
    await db.execute(
        """UPDATE refresh_tokens SET successor = NULL
           WHERE successor IS NOT NULL AND used_at < now() - make_interval(secs => $1)""",
        grace_s,
    )
    tokens = await db.execute("DELETE FROM account_tokens WHERE expires_at < now()")
    sessions = await db.execute(
        """DELETE FROM auth_sessions
           WHERE expires_at < now() OR revoked_at < now() - make_interval(secs => $1)""",
        keep_revoked_s,
    )
    devices = await db.execute("DELETE FROM trusted_devices WHERE expires_at < now()")
    return sum(int(status.split()[-1]) for status in (tokens, sessions, devices))
