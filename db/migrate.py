"""Plain SQL migrations: ``db/migrations/NNNN_name.sql``, applied in order, once each.

Each file runs in its own transaction and is recorded in ``schema_migrations`` with a checksum.
A session advisory lock serialises concurrent runners (two ``streamd migrate`` at once: the second
waits, then finds nothing to do). Files are split into statements so that a failure names the
file, the statement's number and line, and PostgreSQL's message; the transaction rolls back, so
the schema is as it was before that file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from db import jobs

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant shared by every streamd process: "streamd migrations" as a bigint.
ADVISORY_LOCK_KEY = 0x5354_5245_414D_4D47 & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """A migration could not be applied; the message names the file and statement."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    line: int  # 1-based line of the statement's first character in its file


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lower_name.sql")
        migrations.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number in {directory}")
    return migrations


def split_statements(sql: str) -> list[Statement]:
    """Split SQL on top-level semicolons, respecting quotes, dollar quotes and comments."""
    out: list[Statement] = []
    i, start, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in ("'", '"'):
            end = sql.find(c, i + 1)
            while end >= 0 and sql.startswith(c * 2, end):  # doubled quote escapes itself
                end = sql.find(c, end + 2)
            i = n if end < 0 else end + 1
        elif c == "$" and (tag := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            end = sql.find(tag.group(0), i + len(tag.group(0)))
            i = n if end < 0 else end + len(tag.group(0))
        elif c == ";":
            _append(out, sql, start, i)
            start = i = i + 1
        else:
            i += 1
    _append(out, sql, start, n)
    return out


def _append(out: list[Statement], sql: str, start: int, end: int) -> None:
    text = sql[start:end]
    if _strip_comments(text).strip():
        code = _code_start(text)
        out.append(Statement(text[code:].strip(), sql.count("\n", 0, start + code) + 1))


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def _code_start(text: str) -> int:
    """Index of the first character that is neither whitespace nor inside a leading comment."""
    match = re.match(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", text, flags=re.S)
    return match.end() if match else 0


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    """Applied migration versions and their checksums ({} on a database never migrated)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {int(r["version"]): str(r["checksum"]) for r in rows}


async def pending(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    done = await applied_versions(conn)
    return [m for m in load_migrations(directory) if m.version not in done]


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the names applied (empty when up to date)."""
    migrations = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = await applied_versions(conn)
        for m in migrations:
            if m.version in done and done[m.version] != m.checksum:
                log.warning("migration %s changed after it was applied; not re-run", m.name)
        applied: list[str] = []
        for m in (m for m in migrations if m.version not in done):
            await _apply(conn, m)
            applied.append(m.name)
            log.info("applied migration %s", m.name)
        if directory == MIGRATIONS_DIR:
            await jobs.install(conn)  # the job queue's own schema, versioned by pgqueuer
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def _apply(conn: asyncpg.Connection, m: Migration) -> None:
    statements = split_statements(m.sql)
    async with conn.transaction():
        for number, stmt in enumerate(statements, 1):
            try:
                await conn.execute(stmt.sql)
            except asyncpg.PostgresError as exc:
                first = " ".join(stmt.sql.split())[:80]
                raise MigrationError(
                    f"migration {m.name} failed at statement {number} (line {stmt.line}: "
                    f"{first!r}): {type(exc).__name__}: {exc}; nothing of {m.name} was applied"
                ) from exc
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            m.version,
            m.name,
            m.checksum,
        )
