"""Migrations against a real PostgreSQL: apply, re-run, concurrency, a broken file, the schema."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from db.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate, split_statements
from tests.helpers import cli_env, run_cli

TABLES = {"users", "lives", "chat_messages", "videos", "video_qualities", "orders", "cache_data"}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_empty_database_then_rerun_is_a_noop(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        applied = await migrate(conn)
        assert applied == [m.name for m in load_migrations()]
        assert TABLES | {"schema_migrations"} <= await _tables(conn)
        before = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert await migrate(conn) == []
        assert await conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == before
    finally:
        await conn.close()


async def test_concurrent_runs_apply_each_migration_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        names = [m.name for m in load_migrations()]
        assert sorted(results, key=len) == [[], [], names]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(names)
    finally:
        for c in conns:
            await c.close()


def test_two_cli_migrate_processes_at_once(tmp_path: Path, empty_database_url: str) -> None:
    import subprocess
    import sys

    env = cli_env(tmp_path, DATABASE_URL=empty_database_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "streamd", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    summary = sorted(out for out, _ in outputs)
    assert summary[0] == "applied 0 migration(s)\n"
    assert summary[1].startswith(f"applied {len(load_migrations())} migration(s)")
    assert run_cli("check", env=env).returncode == 0


async def test_broken_migration_rolls_back_and_names_file_and_statement(
    tmp_path: Path, empty_database_url: str
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9000_broken.sql").write_text(
        "-- a migration whose second statement fails\n"
        "CREATE TABLE half_done (id int);\n"
        "INSERT INTO half_done VALUES (1);\n"
        "ALTER TABLE no_such_table ADD COLUMN x int;\n"
    )
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(MigrationError) as info:
            await migrate(conn, directory)
        message = str(info.value)
        assert "9000_broken.sql" in message
        assert "statement 3 (line 4" in message
        assert "no_such_table" in message
        # Earlier files stay applied; nothing of the broken one is left behind.
        assert "half_done" not in await _tables(conn)
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        assert 9000 not in {r["version"] for r in versions}
        assert await _tables(conn) >= TABLES
        # Fixing the file lets the next run apply it.
        (directory / "9000_broken.sql").write_text("CREATE TABLE half_done (id int);\n")
        assert await migrate(conn, directory) == ["9000_broken.sql"]
    finally:
        await conn.close()


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_initial.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lower_name\.sql"):
        load_migrations(tmp_path)


def test_split_statements_respects_quotes_comments_and_dollar_quotes() -> None:
    sql = (
        "-- leading comment; not a statement\n"
        "SELECT 'a;b', \"odd;name\";\n"
        "/* block; comment */ SELECT 'it''s; fine';\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 1; END $fn$;\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "  \n-- trailing comment\n"
    )
    statements = split_statements(sql)
    assert [s.line for s in statements] == [2, 3, 4, 5]
    assert statements[0].sql == "SELECT 'a;b', \"odd;name\""
    assert statements[1].sql.endswith("SELECT 'it''s; fine'")
    assert statements[2].sql.endswith("END $fn$")
    assert statements[3].sql == "DO $$ BEGIN PERFORM 1; END $$"


async def test_schema_rules(conn: asyncpg.Connection) -> None:
    uid = await conn.fetchval(
        "INSERT INTO users (username, email, password_hash, role) "
        "VALUES ('alice', 'a@example.com', 'x', 'creator') RETURNING id"
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO users (username, email, password_hash) VALUES ('ALICE', 'b@e.com', 'x')"
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO users (username, email, password_hash, role) "
            "VALUES ('bob', 'b@e.com', 'x', 'superuser')"
        )
    live = await conn.fetchval(
        "INSERT INTO lives (user_id, title, stream_key) VALUES ($1, 't', $2) RETURNING id",
        uid,
        "k" * 32,
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE lives SET status = 'streaming' WHERE id = $1", live)
    # updated_at is maintained by trigger (now() differs between transactions).
    before = await conn.fetchval("SELECT updated_at FROM lives WHERE id = $1", live)
    await conn.execute("UPDATE lives SET title = 'renamed' WHERE id = $1", live)
    after = await conn.fetchval("SELECT updated_at FROM lives WHERE id = $1", live)
    assert after > before
    # A user with lives cannot be deleted by accident; a live's chat goes with the live.
    with pytest.raises(asyncpg.RestrictViolationError):
        await conn.execute("DELETE FROM users WHERE id = $1", uid)
    await conn.execute(
        "INSERT INTO chat_messages (live_id, user_id, content) VALUES ($1, $2, 'hi')", live, uid
    )
    await conn.execute("DELETE FROM lives WHERE id = $1", live)
    assert await conn.fetchval("SELECT count(*) FROM chat_messages") == 0
    # A ready video needs its playlist; timestamps are timestamptz.
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO videos (title, user_id, status) VALUES ('v', $1, 'ready')", uid
        )
    types = await conn.fetch(
        "SELECT DISTINCT data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'schema_migrations' "
        "AND (column_name LIKE '%\\_at' OR column_name IN ('start_time', 'end_time'))"
    )
    assert {r["data_type"] for r in types} == {"timestamp with time zone"}


async def test_indexes_and_extensions(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public'")
    defs = {r["indexname"]: r["indexdef"] for r in rows}
    assert "(user_id, status)" in defs["videos_user_status_idx"]
    assert "(status, created_at)" in defs["videos_status_created_idx"]
    assert "(user_id, status)" in defs["lives_user_status_idx"]
    assert (
        "WHERE (status = ANY (ARRAY['live'::text, 'scheduled'::text]))" in defs["lives_active_idx"]
    )
    assert "USING gin (to_tsvector(" in defs["videos_fulltext_idx"]
    assert "gin_trgm_ops" in defs["videos_title_trgm_idx"]
    extensions = {r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")}
    assert {"pg_trgm", "btree_gin"} <= extensions
    persistence = await conn.fetchval(
        "SELECT relpersistence FROM pg_class WHERE relname = 'cache_data'"
    )
    assert persistence == b"u"  # UNLOGGED, see the migration's comment
