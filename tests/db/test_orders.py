"""db.orders against a real PostgreSQL: idempotent creation, events applied exactly once
(also under concurrent deliveries), never backwards, mismatches flagged, a refund before its
capture deferred, refunds that never exceed the capture, and a ledger that reconciles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db import orders
from db.orders import StoredEvent

FEE_BPS = 1000


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=30)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


async def _people(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """(buyer, creator, live id)."""
    ids = []
    for name in ("buyer", "creator"):
        ids.append(await pool.fetchval(
            "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            name, f"{name}@example.com",
        ))  # fmt: skip
    live = await pool.fetchval(
        """INSERT INTO lives (title, user_id, stream_key, price_amount, price_currency)
           VALUES ('paid', $1, 'k-0123456789abcdef', 15000, 'TWD') RETURNING id""",
        ids[1],
    )
    return int(ids[0]), int(ids[1]), int(live)


async def _order(pool: asyncpg.Pool, ref: str, key: str | None = None, amount: int = 15000,
                 request_hash: str = "h1") -> tuple[asyncpg.Record, bool]:  # fmt: skip
    people = await pool.fetchrow(
        "SELECT (SELECT id FROM users WHERE username = 'buyer') AS buyer, user_id, id "
        "FROM lives LIMIT 1"
    )
    if people is None:
        buyer, creator, live = await _people(pool)
    else:
        buyer, creator, live = people["buyer"], people["user_id"], people["id"]
    async with pool.acquire() as conn, conn.transaction():
        await orders.lock_reference(conn, ref)
        return await orders.create(
            conn, reference=ref, user_id=buyer, creator_id=creator, item_type="live_ticket",
            live_id=live, video_id=None, description="Ticket", tip_message=None, amount=amount,
            currency="TWD", provider="sandbox", idempotency_key=key, request_hash=request_hash,
            ttl_s=1800,
        )  # fmt: skip


def _event(
    event_id: str, kind: str, ref: str, amount: int = 15000, currency: str = "TWD",
    provider_ref: str | None = "pay_1", refund_ref: str | None = None,
) -> StoredEvent:  # fmt: skip
    return StoredEvent(event_id, kind, ref, provider_ref, amount, currency, refund_ref, None)


async def _apply(pool: asyncpg.Pool, event: StoredEvent) -> orders.Outcome:
    async with pool.acquire() as conn, conn.transaction():
        return await orders.apply_event(conn, "sandbox", event, fee_bps=FEE_BPS,
                                        actor=f"sandbox:{event.event_id}")  # fmt: skip


async def test_idempotency_key_same_request_same_order_other_request_conflict(
    pool: asyncpg.Pool,
) -> None:
    first, created = await _order(pool, "first", key="k1")
    again, created_again = await _order(pool, "second", key="k1")
    assert created and not created_again and again["id"] == first["id"]
    with pytest.raises(orders.IdempotencyConflict):
        await _order(pool, "third", key="k1", request_hash="other")


async def test_fifty_concurrent_deliveries_of_one_capture_have_one_effect(
    pool: asyncpg.Pool,
) -> None:
    order, _ = await _order(pool, "first")
    outcomes = await asyncio.gather(
        *(_apply(pool, _event("evt_1", orders.CAPTURE, "first")) for _ in range(50))
    )
    assert sorted(o.outcome for o in outcomes) == ["applied"] + ["duplicate"] * 49
    row = await orders.get(pool, int(order["id"]))
    assert row is not None and row["status"] == "paid" and row["captured_amount"] == 15000
    assert await pool.fetchval("SELECT count(*) FROM ledger_entries") == 1
    assert await pool.fetchval("SELECT count(*) FROM webhook_events") == 1


async def test_events_never_move_an_order_backwards(pool: asyncpg.Pool) -> None:
    order, _ = await _order(pool, "first")
    assert (await _apply(pool, _event("e1", orders.CAPTURE, "first"))).outcome == "applied"
    assert (await _apply(pool, _event("e2", orders.FAIL, "first"))).outcome == "stale"
    assert (await _apply(pool, _event("e3", orders.CAPTURE, "first"))).outcome == "duplicate_effect"
    row = await orders.get(pool, int(order["id"]))
    assert row is not None and row["status"] == "paid"


async def test_other_amount_or_currency_is_flagged_never_paid(pool: asyncpg.Pool) -> None:
    order, _ = await _order(pool, "first")
    outcome = await _apply(pool, _event("e1", orders.CAPTURE, "first", amount=100))
    assert outcome.outcome == "review"
    outcome = await _apply(pool, _event("e2", orders.CAPTURE, "first", currency="USD"))
    assert outcome.outcome == "review"
    row = await orders.get(pool, int(order["id"]))
    assert row is not None and row["status"] == "created" and row["review_reason"]
    assert await pool.fetchval("SELECT count(*) FROM ledger_entries") == 0


async def test_refund_before_capture_is_deferred_then_applied(pool: asyncpg.Pool) -> None:
    order, _ = await _order(pool, "first")
    refund = _event("r1", orders.REFUND, "first", amount=5000, refund_ref="re_1")
    assert (await _apply(pool, refund)).outcome == "deferred"
    assert (await _apply(pool, _event("c1", orders.CAPTURE, "first"))).outcome == "applied"
    row = await orders.get(pool, int(order["id"]))
    assert row is not None and row["status"] == "partially_refunded"
    assert row["refunded_amount"] == 5000
    assert (
        await pool.fetchval("SELECT outcome FROM webhook_events WHERE event_id = 'r1'") == "applied"
    )


async def test_parallel_refunds_never_exceed_the_capture_and_ledger_reconciles(
    pool: asyncpg.Pool,
) -> None:
    order, _ = await _order(pool, "first")
    await _apply(pool, _event("c1", orders.CAPTURE, "first"))

    async def refund(amount: int) -> bool:
        async with pool.acquire() as conn, conn.transaction():
            locked = await orders.lock(conn, int(order["id"]))
            assert locked is not None
            try:
                row = await orders.reserve_refund(conn, locked, amount, requested_by="user:1",
                                                  reason=None)  # fmt: skip
            except orders.RefundTooLarge:
                return False
            await orders.succeed_refund(conn, locked, row, fee_bps=FEE_BPS, actor="user:1")
            return True

    results = await asyncio.gather(*(refund(4000) for _ in range(10)))
    assert results.count(True) == 3  # 3 x 4000 <= 15000 < 4 x 4000
    last = await asyncio.gather(refund(3000), refund(3000))
    assert last.count(True) == 1
    row = await orders.get(pool, int(order["id"]))
    assert row is not None and row["status"] == "refunded" and row["refunded_amount"] == 15000
    ledger = await pool.fetchrow(
        "SELECT sum(amount) AS amount, sum(platform_fee) AS fee, sum(creator_share) AS share "
        "FROM ledger_entries WHERE order_id = $1",
        order["id"],
    )
    assert ledger is not None
    assert ledger["amount"] == row["captured_amount"] - row["refunded_amount"] == 0
    assert ledger["fee"] == 0 and ledger["share"] == 0  # a full refund returns the whole fee


async def test_event_for_an_order_being_created_waits_for_its_commit(pool: asyncpg.Pool) -> None:
    buyer, creator, live = await _people(pool)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await orders.lock_reference(conn, "late")
        await orders.create(
            conn, reference="late", user_id=buyer, creator_id=creator, item_type="live_ticket",
            live_id=live, video_id=None, description="Ticket", tip_message=None, amount=15000,
            currency="TWD", provider="sandbox", idempotency_key=None, request_hash="h",
            ttl_s=1800,
        )  # fmt: skip
        applying = asyncio.ensure_future(_apply(pool, _event("c1", orders.CAPTURE, "late")))
        await asyncio.sleep(0.3)
        assert not applying.done()  # held on the reference's lock, not "no such order"
        await tx.commit()
    assert (await asyncio.wait_for(applying, 10)).outcome == "applied"
