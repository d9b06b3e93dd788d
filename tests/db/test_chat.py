"""db.chat against a real PostgreSQL: batches under the NOTIFY limit, nothing announced for a
rolled-back write, single-use tickets, viewer reports that go stale."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from db import auth as auth_db
from db import chat as chat_db
from db import lives, users


async def _owner_and_live(conn: asyncpg.Connection) -> tuple[int, int]:
    user = await users.create(conn, username="owner", email="o@example.com",
                              password_hash="x", role="creator")  # fmt: skip
    live = await lives.create(conn, user_id=user["id"], title="db")
    return int(user["id"]), int(live["id"])


async def _listen(database_url: str) -> tuple[asyncpg.Connection, list[str]]:
    listener = await asyncpg.connect(database_url)
    payloads: list[str] = []
    await listener.add_listener(chat_db.CHANNEL, lambda *args: payloads.append(args[3]))
    return listener, payloads


async def test_a_batch_is_announced_in_payloads_under_8000_bytes(
    conn: asyncpg.Connection, database_url: str
) -> None:
    user_id, live_id = await _owner_and_live(conn)
    listener, payloads = await _listen(database_url)
    # Worst cases for the size of a payload: 4-byte characters, and quotes (escaped to 2 bytes).
    texts = ["\U0001f600" * 500, '"' * 500, "\\" * 500, "short"] * 25
    rows = await chat_db.insert_messages(conn, [live_id] * 100, [user_id] * 100, texts)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    for _ in range(100):
        if sum(len(json.loads(p)) for p in payloads) >= 100:
            break
        await asyncio.sleep(0.02)
    await listener.close()
    events = [e for p in payloads for e in json.loads(p)]
    assert [e["text"] for e in events] == texts
    assert [e["id"] for e in events] == [r["id"] for r in rows]
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert 1 < len(payloads) < 100  # packed, and split


async def test_a_rolled_back_message_is_never_announced(
    conn: asyncpg.Connection, database_url: str
) -> None:
    user_id, live_id = await _owner_and_live(conn)
    listener, payloads = await _listen(database_url)
    tx = conn.transaction()
    await tx.start()
    await chat_db.insert_messages(conn, [live_id], [user_id], ["never"])
    await tx.rollback()
    await chat_db.insert_messages(conn, [live_id], [user_id], ["committed"])
    for _ in range(100):
        if payloads:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    await listener.close()
    assert [e["text"] for p in payloads for e in json.loads(p)] == ["committed"]
    assert await conn.fetchval("SELECT count(*) FROM chat_messages") == 1


async def test_tickets_are_single_use_and_expire(conn: asyncpg.Connection) -> None:
    user_id, live_id = await _owner_and_live(conn)
    session = await auth_db.create_session(
        conn, user_id=user_id, token_hash=b"r" * 32, ttl=3600, user_agent=None, ip=None
    )
    ticket = {"live_id": live_id, "user_id": user_id, "session_id": session, "ttl_s": 60}
    digest = b"d" * 32
    await chat_db.create_ticket(conn, digest=digest, **ticket)
    assert (await chat_db.use_ticket(conn, digest=digest, live_id=live_id))["id"] == user_id
    assert await chat_db.use_ticket(conn, digest=digest, live_id=live_id) is None
    old = b"o" * 32
    await chat_db.create_ticket(conn, digest=old, **ticket)
    await conn.execute("UPDATE chat_tickets SET expires_at = now() - interval '1 s'")
    assert await chat_db.use_ticket(conn, digest=old, live_id=live_id) is None
    assert await conn.fetchval("SELECT count(*) FROM chat_tickets") == 0  # consumed anyway


async def test_viewer_reports_sum_across_processes_and_go_stale(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            _, live_id = await _owner_and_live(conn)
        a, b = uuid.uuid4(), uuid.uuid4()
        await chat_db.report_viewers(pool, process_id=a, live_ids=[live_id], counts=[3],
                                     stale_after_s=10)  # fmt: skip
        totals = await chat_db.report_viewers(pool, process_id=b, live_ids=[live_id], counts=[4],
                                              stale_after_s=10)  # fmt: skip
        assert totals == {live_id: 7}
        # A reports no one any more (its row goes); B's report ages past the limit.
        await pool.execute("UPDATE chat_viewer_reports SET reported_at = now() - interval '11 s'"
                           " WHERE process_id = $1", b)  # fmt: skip
        totals = await chat_db.report_viewers(pool, process_id=a, live_ids=[], counts=[],
                                              stale_after_s=10)  # fmt: skip
        assert totals == {live_id: 0}
        row = await pool.fetchrow("SELECT viewer_count, peak_viewer_count FROM lives")
        assert (row["viewer_count"], row["peak_viewer_count"]) == (0, 7)
        assert await pool.fetchval("SELECT count(*) FROM chat_viewer_reports") == 0
        # A report for a live that does not exist is ignored.
        assert await chat_db.report_viewers(pool, process_id=a, live_ids=[999_999], counts=[1],
                                            stale_after_s=10) == {}  # fmt: skip
    finally:
        await pool.close()
