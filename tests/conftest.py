"""Shared fixtures: one real PostgreSQL 18 cluster (the embedded wheel) for the whole session.

Each test that needs a database gets its own, cloned from a migrated template (fast, isolated).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from tests.helpers import with_database

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: pytest resets /tmp/pytest-of-USER to mode 0700 whenever a
    # session starts, which would cut the server's user (when run as root) off its data dir.
    root = Path(tempfile.mkdtemp(prefix="streamd-test-pg-"))
    server = EmbeddedPostgres(root / "pg")
    server.acquire()
    try:
        yield server
    finally:
        server.release()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_database(pg_server: EmbeddedPostgres) -> str:
    """A migrated database used as the template of each test's database."""
    conn = await asyncpg.connect(pg_server.url())
    try:
        await conn.execute("CREATE DATABASE streamd_template")
        target = await asyncpg.connect(with_database(pg_server.url(), "streamd_template"))
        try:
            await migrate(target)
        finally:
            await target.close()
    finally:
        await conn.close()
    return "streamd_template"


async def _fresh_database(pg_server: EmbeddedPostgres, template: str) -> AsyncIterator[str]:
    name = f"t{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield with_database(pg_server.url(), name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(pg_server: EmbeddedPostgres, template_database: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    async for url in _fresh_database(pg_server, template_database):
        yield url


@pytest.fixture
async def empty_database_url(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A database with no schema at all (template0)."""
    async for url in _fresh_database(pg_server, "template0"):
        yield url


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
