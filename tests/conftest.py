"""Shared fixtures: one real PostgreSQL 18 cluster (the embedded wheel) for the whole session.

Each test that needs a database gets its own, cloned from a migrated template (fast, isolated).

The S3 fixtures (tests/packager/storage, and /hls on S3 in tests/web): a real S3 API on loopback
(moto's threaded server), a fresh bucket per test, and the fault-injection proxy of
``tests.s3_fixtures`` in front of the server. Credentials are fake and come through the standard
AWS chain (environment variables), the way streamd reads real ones; moto accepts any. moto and
boto3 are imported when a test first asks for them, not by every run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from tests.helpers import with_database

if TYPE_CHECKING:
    from tests.s3_fixtures import FaultProxy

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


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)  # nothing from this machine's ~/.aws
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: None) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    """A new, empty bucket of this test's own."""
    import boto3

    from tests.s3_fixtures import bucket_name

    name = bucket_name()
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    from tests.s3_fixtures import FaultProxy

    host, port = moto_endpoint.removeprefix("http://").rsplit(":", 1)
    p = FaultProxy((host, int(port)))
    await p.start()
    try:
        yield p
    finally:
        await p.close()
