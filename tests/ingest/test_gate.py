"""The publish gate against a real PostgreSQL: keys, owners, one publisher per live everywhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db import lives, users
from ingest.gate import Admitted, PublishGate, Rejected, redact


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


async def _live(pool: asyncpg.Pool, username: str = "owner") -> tuple[int, str]:
    user = await users.create(
        pool, username=username, email=f"{username}@e.com", password_hash="x", role="creator"
    )
    row = await lives.create(pool, user_id=user["id"], title="t")
    return int(row["id"]), str(row["stream_key"])


async def test_one_publisher_per_live_across_processes(
    pool: asyncpg.Pool, database_url: str
) -> None:
    live_id, key = await _live(pool)
    # Two gates with their own lock connections stand for two streamd processes.
    a, b = PublishGate(pool, database_url, "live"), PublishGate(pool, database_url, "live")
    await a.open()
    await b.open()
    try:
        first = await a.admit("live", key, lambda: None)
        assert first == Admitted(live_id, "owner")
        second = await b.admit("live", key, lambda: None)
        assert isinstance(second, Rejected)
        assert second.reason == "already_publishing"
        again_here = await a.admit("live", key, lambda: None)
        assert isinstance(again_here, Rejected)
        assert again_here.reason == "already_publishing"
        assert await pool.fetchval("SELECT status FROM lives WHERE id=$1", live_id) == "live"
        await a.release(live_id)
        assert await pool.fetchval("SELECT status FROM lives WHERE id=$1", live_id) == "ended"
        # A live is a reusable room: the other process may now publish to it.
        assert await b.admit("live", key, lambda: None) == Admitted(live_id, "owner")
    finally:
        await a.close()
        await b.close()


async def test_a_dead_process_frees_its_lives(pool: asyncpg.Pool, database_url: str) -> None:
    _, key = await _live(pool)
    a, b = PublishGate(pool, database_url, "live"), PublishGate(pool, database_url, "live")
    await a.open()
    await b.open()
    try:
        assert isinstance(await a.admit("live", key, lambda: None), Admitted)
        await a.close()  # the process is gone: PostgreSQL drops its session locks
        assert isinstance(await b.admit("live", key, lambda: None), Admitted)
    finally:
        await b.close()


@pytest.mark.parametrize(
    ("app", "key", "reason"),
    [
        ("live", "", "bad_key"),
        ("live", "k" * 201, "bad_key"),
        ("live", "no-such-key-000000000000", "unknown_key"),
        ("other", "whatever-000000000000000", "wrong_app"),
    ],
)
async def test_rejections(pool: asyncpg.Pool, database_url: str, app: str, key: str, reason: str
                          ) -> None:  # fmt: skip
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    try:
        outcome = await gate.admit(app, key, lambda: None)
        assert isinstance(outcome, Rejected)
        assert outcome.reason == reason
        assert key[:8] not in outcome.message or not key
    finally:
        await gate.close()


async def test_deactivated_owner_is_refused(pool: asyncpg.Pool, database_url: str) -> None:
    live_id, key = await _live(pool)
    await pool.execute("UPDATE users SET is_active = false")
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    try:
        outcome = await gate.admit("live", key, lambda: None)
        assert outcome == Rejected("owner_inactive", "this account is deactivated")
        assert await pool.fetchval("SELECT status FROM lives WHERE id=$1", live_id) == "offline"
    finally:
        await gate.close()


@pytest.mark.parametrize(("role", "admitted"), [("viewer", False), ("admin", True)])
async def test_only_a_role_that_may_stream_publishes(
    pool: asyncpg.Pool, database_url: str, role: str, admitted: bool
) -> None:
    # A creator demoted to viewer keeps its lives and keys: the gate checks the role itself.
    live_id, key = await _live(pool)
    await pool.execute("UPDATE users SET role = $1", role)
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    try:
        outcome = await gate.admit("live", key, lambda: None)
        status = await pool.fetchval("SELECT status FROM lives WHERE id=$1", live_id)
    finally:
        await gate.close()
    if admitted:
        assert outcome == Admitted(live_id, "owner") and status == "live"
    else:
        assert outcome == Rejected(
            "owner_not_creator", "this account may not stream: it needs the creator role"
        )
        assert status == "offline"
        locks = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype='advisory'")
        assert locks == 0


@pytest.mark.parametrize("change", ["role", "deactivation"])
async def test_a_demotion_between_the_check_and_the_start_is_caught(
    pool: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The owner is demoted (or deactivated) after the gate read the key's row but before the
    live went on air: the demotion's stop found nothing on air, so the start itself must see
    it, or the publish would run on unchecked. Marking the live re-checks the owner."""
    live_id, key = await _live(pool)
    stale = await lives.get_publish_target(pool, key)

    async def target_then_demotion(db: object, stream_key: str) -> object:
        if change == "role":
            await pool.execute("UPDATE users SET role = 'viewer' WHERE username = 'owner'")
        else:
            await pool.execute("UPDATE users SET is_active = false WHERE username = 'owner'")
        return stale  # what the gate read a moment before the change

    monkeypatch.setattr(lives, "get_publish_target", target_then_demotion)
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    try:
        outcome = await gate.admit("live", key, lambda: None)
        assert outcome == Rejected("owner_changed", "this account may no longer stream")
        assert gate.held() == frozenset()
        assert await pool.fetchval("SELECT status FROM lives WHERE id=$1", live_id) == "offline"
        locks = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype='advisory'")
        assert locks == 0
    finally:
        await gate.close()


async def test_lock_connection_loss_is_recovered(pool: asyncpg.Pool, database_url: str) -> None:
    live_id, key = await _live(pool)
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    ended: list[int] = []
    try:
        assert isinstance(await gate.admit("live", key, lambda: ended.append(live_id)), Admitted)
        # Kill the gate's lock connection from the server side, as a database restart would.
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
        )
        for _ in range(100):
            await asyncio.sleep(0.05)
            held = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype='advisory'")
            if held == 1:
                break
        assert held == 1  # the lock was taken back on a new connection
        assert ended == []
        other = PublishGate(pool, database_url, "live")
        await other.open()
        try:
            outcome = await other.admit("live", key, lambda: None)
            assert isinstance(outcome, Rejected)
            assert outcome.reason == "already_publishing"
        finally:
            await other.close()
    finally:
        await gate.close()


def test_redact_never_shows_a_whole_key() -> None:
    key = "abcdefghijklmnopqrstuvwxyz012345"
    assert key not in redact(key)
    assert redact(key).startswith("abcd")
    assert redact("short") == "…"
