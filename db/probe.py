"""Is the database there, and which server is it: /ready, the chat LISTEN connection's idle
check, ``streamd check``."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy


async def ping(pool: asyncpg.Pool, limit_s: float = 2.0) -> None:
    """Raise if the database does not answer ``SELECT 1`` within ``limit_s`` seconds."""
    async with pool.acquire(timeout=limit_s) as conn:
        await ping_connection(conn, limit_s)


async def ping_connection(conn: asyncpg.Connection | PoolConnectionProxy, limit_s: float) -> None:
    """Raise if ``conn`` does not answer ``SELECT 1`` within ``limit_s`` seconds."""
    await conn.fetchval("SELECT 1", timeout=limit_s)


async def server_version(conn: asyncpg.Connection) -> str:
    """The server's version, as PostgreSQL spells it (``18.1``)."""
    return str(await conn.fetchval("SHOW server_version"))
