"""Orders, their timeline, provider events, refunds and the ledger (migration 0009).

The state machine (every change is a row in ``order_events`` naming its actor)::

    created --checkout--> pending --capture--> paid --refund--> partially_refunded --> refunded
       |                     |                   \\----------------full refund---------^
       +--> failed / canceled / expired <--------+
    (a capture that arrives after failed/canceled/expired still makes the order paid: the
     money was taken, so the buyer gets the item; nothing ever moves a paid order back)

Provider events are applied by `apply_event` in the caller's transaction, after their row in
``webhook_events`` is inserted: the unique (provider, event_id) key makes concurrent
deliveries of one event wait for the first and then do nothing. An event naming an order
whose creating transaction is still open waits for it on the order's advisory lock
(`lock_reference`), which the creator holds from before the insert to its commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from db.types import Connection, Executor

ORDER_COLUMNS = (
    "id, reference, user_id, creator_id, item_type, live_id, video_id, description, "
    "tip_message, amount, currency, provider, checkout_ref, payment_ref, status, "
    "captured_amount, refunded_amount, review_reason, checkout_url, checkout_form, "
    "expires_at, paid_at, created_at, updated_at"
)
OPEN = ("created", "pending")
CAPTURED = ("paid", "partially_refunded", "refunded")
ENTITLED = ("paid", "partially_refunded")


CAPTURE, FAIL, CANCEL, REFUND = "captured", "failed", "canceled", "refunded"
REFUND_FAILED = "refund_failed"
#: Refunds that hold part of the capture until they end: asked for, or of unknown outcome.
RESERVED = ("pending", "unknown")


class Event(Protocol):
    """A provider's notification as `web.payments.provider.Event` carries it."""

    @property
    def event_id(self) -> str: ...
    @property
    def kind(self) -> str: ...  # CAPTURE, FAIL, CANCEL, REFUND or REFUND_FAILED
    @property
    def reference(self) -> str | None: ...
    @property
    def provider_ref(self) -> str | None: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def refund_ref(self) -> str | None: ...
    @property
    def refund_id(self) -> str | None: ...  # ours, echoed by the provider (Stripe metadata)
    @property
    def message(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as kept in ``webhook_events.event`` (replayed when it was deferred)."""

    event_id: str
    kind: str
    reference: str | None
    provider_ref: str | None
    amount: int
    currency: str
    refund_ref: str | None
    message: str | None
    refund_id: str | None = None


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with another request body."""


class RefundTooLarge(Exception):
    def __init__(self, refundable: int) -> None:
        super().__init__(f"at most {refundable} can still be refunded")
        self.refundable = refundable


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one provider event did: the ``webhook_events.outcome`` and the order it touched."""

    outcome: str  # applied | duplicate | duplicate_effect | review | deferred | stale | ignored
    order_id: int | None


async def lock_reference(conn: Connection, reference: str) -> None:
    """Held until the transaction ends: by the order's creator (insert to commit) and by
    whoever applies an event to it, so an event never misses an order being created."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('order:' || $1, 0))",
                       reference)  # fmt: skip


async def record(
    conn: Executor, order_id: int, kind: str, actor: str, *, from_status: str | None = None,
    to_status: str | None = None, detail: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    await conn.execute(
        """INSERT INTO order_events (order_id, kind, from_status, to_status, actor, detail)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
        order_id, kind, from_status, to_status, actor, json.dumps(dict(detail or {})),
    )  # fmt: skip


async def create(
    conn: Connection, *, reference: str, user_id: int, creator_id: int, item_type: str,
    live_id: int | None, video_id: int | None, description: str, tip_message: str | None,
    amount: int, currency: str, provider: str, idempotency_key: str | None,
    request_hash: str, ttl_s: float,
) -> tuple[asyncpg.Record, bool]:  # fmt: skip
    """(order, created now). With an idempotency key already used by this user for the same
    request, the earlier order and False; for another request, IdempotencyConflict. Call in
    a transaction, after `lock_reference(reference)`."""
    row = await conn.fetchrow(
        f"""INSERT INTO orders (reference, user_id, creator_id, item_type, live_id, video_id,
                                description, tip_message, amount, currency, provider,
                                idempotency_key, request_hash, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                    now() + make_interval(secs => $14))
            ON CONFLICT (user_id, idempotency_key) DO NOTHING
            RETURNING {ORDER_COLUMNS}""",
        reference, user_id, creator_id, item_type, live_id, video_id, description,
        tip_message, amount, currency, provider, idempotency_key, request_hash, ttl_s,
    )  # fmt: skip
    if row is not None:
        await record(
            conn,
            int(row["id"]),
            "created",
            f"user:{user_id}",
            to_status="created",
            detail={"amount": amount, "currency": currency, "provider": provider},
        )
        return row, True
    earlier = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS}, request_hash FROM orders "
        "WHERE user_id = $1 AND idempotency_key = $2",
        user_id, idempotency_key,
    )  # fmt: skip
    assert earlier is not None  # the conflict that skipped the insert is this row
    if earlier["request_hash"] != request_hash:
        raise IdempotencyConflict
    return earlier, False


async def get(db: Executor, order_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)


async def lock(conn: Connection, order_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 FOR UPDATE", order_id
    )


async def set_checkout(
    conn: Connection, order_id: int, *, checkout_ref: str | None, url: str,
    form: Mapping[str, str] | None, actor: str,
) -> asyncpg.Record | None:  # fmt: skip
    """created -> pending with the provider's checkout; None when an event got there first
    (the order is then already paid, failed or canceled and keeps that state)."""
    row = await conn.fetchrow(
        f"""UPDATE orders SET status = 'pending', checkout_ref = $2, checkout_url = $3,
                              checkout_form = $4::jsonb
             WHERE id = $1 AND status = 'created' RETURNING {ORDER_COLUMNS}""",
        order_id, checkout_ref, url, json.dumps(dict(form)) if form is not None else None,
    )  # fmt: skip
    if row is not None:
        await record(conn, order_id, "checkout", actor, from_status="created",
                     to_status="pending", detail={"checkout_ref": checkout_ref})  # fmt: skip
    return row


async def transition(
    conn: Connection, order: asyncpg.Record, to_status: str, actor: str, *, kind: str,
    detail: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    await conn.execute("UPDATE orders SET status = $2 WHERE id = $1", order["id"], to_status)
    await record(conn, int(order["id"]), kind, actor, from_status=str(order["status"]),
                 to_status=to_status, detail=detail)  # fmt: skip


# --- provider events ---


def event_json(event: Event) -> str:
    return json.dumps({
        "kind": str(event.kind), "reference": event.reference,
        "provider_ref": event.provider_ref, "amount": event.amount,
        "currency": event.currency, "refund_ref": event.refund_ref, "message": event.message,
        "refund_id": event.refund_id,
    })  # fmt: skip


def event_from_json(event_id: str, data: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        event_id=event_id, kind=str(data["kind"]), reference=data["reference"],
        provider_ref=data["provider_ref"], amount=int(data["amount"]),
        currency=str(data["currency"]), refund_ref=data["refund_ref"], message=data["message"],
        refund_id=data.get("refund_id"),
    )  # fmt: skip


async def find_for_event(conn: Connection, provider: str, event: Event) -> asyncpg.Record | None:
    """The event's order, locked: by our reference (waiting out an order still being created),
    else by the provider's payment or checkout id."""
    if event.reference:
        await lock_reference(conn, event.reference)
        row = await conn.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE reference = $1 AND provider = $2 "
            "FOR UPDATE",
            event.reference, provider,
        )  # fmt: skip
        if row is not None:
            return row
    if event.provider_ref:
        return await conn.fetchrow(
            f"""SELECT {ORDER_COLUMNS} FROM orders
                 WHERE provider = $1 AND (payment_ref = $2 OR checkout_ref = $2)
                 LIMIT 1 FOR UPDATE""",
            provider, event.provider_ref,
        )  # fmt: skip
    return None


async def apply_event(
    conn: Connection, provider: str, event: Event, *, fee_bps: int, actor: str
) -> Outcome:
    """Record and apply one provider event, exactly once per (provider, event id). Call in a
    transaction. An event naming no order of ours is recorded as ``unknown_order`` (an order
    still being created is waited for: see `find_for_event`), so the provider stops resending
    what another application on the same account caused."""
    order = await find_for_event(conn, provider, event)
    if order is None:
        await conn.execute(
            """INSERT INTO webhook_events (provider, event_id, kind, reference, outcome, event)
               VALUES ($1, $2, $3, $4, 'unknown_order', $5::jsonb)
               ON CONFLICT (provider, event_id) DO NOTHING""",
            provider, event.event_id, str(event.kind), event.reference, event_json(event),
        )  # fmt: skip
        return Outcome("unknown_order", None)
    inserted = await conn.fetchval(
        """INSERT INTO webhook_events (provider, event_id, kind, reference, order_id, outcome,
                                       event)
           VALUES ($1, $2, $3, $4, $5, 'received', $6::jsonb)
           ON CONFLICT (provider, event_id) DO NOTHING RETURNING id""",
        provider, event.event_id, str(event.kind), event.reference, order["id"],
        event_json(event),
    )  # fmt: skip
    if inserted is None:
        return Outcome("duplicate", int(order["id"]))
    outcome = await _apply(conn, order, provider, event, fee_bps=fee_bps, actor=actor)
    await conn.execute("UPDATE webhook_events SET outcome = $2 WHERE id = $1", inserted, outcome)
    if outcome == "applied" and event.kind == CAPTURE:
        await _replay_deferred(conn, int(order["id"]), provider, fee_bps=fee_bps)
    return Outcome(outcome, int(order["id"]))


async def _apply(
    conn: Connection, order: asyncpg.Record, provider: str, event: Event, *,
    fee_bps: int, actor: str,
) -> str:  # fmt: skip
    status = str(order["status"])
    detail = {"event_id": event.event_id, "amount": event.amount, "currency": event.currency}
    if event.kind == CAPTURE:
        if status in CAPTURED:
            if event.provider_ref and order["payment_ref"] not in (None, event.provider_ref):
                # A second, different payment for one order: money taken twice.
                await _flag(conn, order, f"a second payment {event.provider_ref} was captured",
                            actor, detail)  # fmt: skip
                return "review"
            return "duplicate_effect"
        if event.amount != order["amount"] or event.currency != order["currency"]:
            reason = (f"captured {event.amount} {event.currency} for an order of "
                      f"{order['amount']} {order['currency']}")  # fmt: skip
            await _flag(conn, order, reason, actor, detail)
            return "review"
        await conn.execute(
            """UPDATE orders SET status = 'paid', captured_amount = $2, paid_at = now(),
                                 payment_ref = coalesce($3, payment_ref)
                WHERE id = $1""",
            order["id"], event.amount, event.provider_ref,
        )  # fmt: skip
        await record(conn, int(order["id"]), "captured", actor, from_status=status,
                     to_status="paid", detail=detail)  # fmt: skip
        fee = event.amount * fee_bps // 10_000
        await conn.execute(
            """INSERT INTO ledger_entries (order_id, creator_id, kind, amount, platform_fee,
                                           creator_share, currency)
               VALUES ($1, $2, 'capture', $3, $4, $5, $6)""",
            order["id"], order["creator_id"], event.amount, fee, event.amount - fee,
            event.currency,
        )  # fmt: skip
        return "applied"
    if event.kind in (FAIL, CANCEL):
        if status not in OPEN:
            return "stale"  # never backwards: a late decline of a paid order changes nothing
        to_status = "failed" if event.kind == FAIL else "canceled"
        await transition(conn, order, to_status, actor, kind=to_status,
                         detail=detail | {"message": event.message})  # fmt: skip
        return "applied"
    if event.kind == REFUND:
        return await _provider_refund(conn, order, event, fee_bps=fee_bps, actor=actor)
    if event.kind == REFUND_FAILED:
        refund = await _our_refund(conn, order, event)
        if refund is None or refund["status"] not in RESERVED:
            return "stale"
        await fail_refund(conn, int(order["id"]), int(refund["id"]),
                          event.message or "the provider could not refund", actor)  # fmt: skip
        return "applied"
    return "ignored"


async def _flag(
    conn: Connection, order: asyncpg.Record, reason: str, actor: str, detail: Mapping[str, Any]
) -> None:
    await conn.execute("UPDATE orders SET review_reason = $2 WHERE id = $1", order["id"], reason)
    await record(conn, int(order["id"]), "flagged", actor, detail=dict(detail) | {"reason": reason})


async def _provider_refund(
    conn: Connection, order: asyncpg.Record, event: Event, *, fee_bps: int, actor: str
) -> str:
    if str(order["status"]) not in CAPTURED:
        return "deferred"  # a refund reported before its capture: replayed after the capture
    refund = await _our_refund(conn, order, event)
    if refund is not None:
        if refund["status"] == "succeeded":
            return "duplicate_effect"
        if refund["status"] == "failed" and int(refund["amount"]) > await refundable(conn, order):
            # Given up on, its amount refunded since by other means: money went out twice.
            await _flag(conn, order, f"refund {refund['id']}, marked failed, was paid out after "
                        "all, beyond what is left to refund", actor,
                        {"event_id": event.event_id})  # fmt: skip
            return "review"
        await succeed_refund(conn, order, refund, fee_bps=fee_bps, actor=actor,
                             provider_ref=event.refund_ref)  # fmt: skip
        return "applied"
    # A refund made elsewhere (the provider's dashboard): recorded as it is, when it fits
    # beside what is refunded and what our own pending refunds will take.
    left = await refundable(conn, order)
    if event.amount > left or event.currency != order["currency"]:
        await _flag(
            conn,
            order,
            f"the provider refunded {event.amount} {event.currency}, more than the {left} left",
            actor,
            {"event_id": event.event_id},
        )
        return "review"
    refund = await conn.fetchrow(
        """INSERT INTO refunds (order_id, amount, currency, provider_ref, requested_by, reason)
           VALUES ($1, $2, $3, $4, $5, 'made at the provider') RETURNING *""",
        order["id"], event.amount, event.currency, event.refund_ref, actor,
    )  # fmt: skip
    assert refund is not None
    await succeed_refund(conn, order, refund, fee_bps=fee_bps, actor=actor)
    return "applied"


async def _our_refund(
    conn: Connection, order: asyncpg.Record, event: Event
) -> asyncpg.Record | None:
    """The refund row an event is about (locked): by the provider's refund id, else by ours
    (echoed before the refund call's answer gave us the provider's)."""
    if event.refund_ref:
        refund = await conn.fetchrow(
            "SELECT * FROM refunds WHERE order_id = $1 AND provider_ref = $2 FOR UPDATE",
            order["id"], event.refund_ref,
        )  # fmt: skip
        if refund is not None:
            return refund
    if event.refund_id and event.refund_id.isascii() and event.refund_id.isdigit():
        return await conn.fetchrow(
            "SELECT * FROM refunds WHERE order_id = $1 AND id = $2 FOR UPDATE",
            order["id"], int(event.refund_id),
        )  # fmt: skip
    return None


async def _replay_deferred(conn: Connection, order_id: int, provider: str, *, fee_bps: int) -> None:
    rows = await conn.fetch(
        """SELECT id, event_id, event FROM webhook_events
            WHERE order_id = $1 AND outcome = 'deferred' ORDER BY id""",
        order_id,
    )
    for row in rows:
        order = await lock(conn, order_id)
        assert order is not None
        event = event_from_json(str(row["event_id"]), json.loads(row["event"]))
        outcome = await _apply(conn, order, provider, event, fee_bps=fee_bps,
                               actor=f"{provider}:{row['event_id']}")  # fmt: skip
        await conn.execute("UPDATE webhook_events SET outcome = $2 WHERE id = $1",
                           row["id"], outcome)  # fmt: skip


# --- refunds ---


async def refundable(conn: Executor, order: asyncpg.Record) -> int:
    """What can still be refunded: captured, less refunded and less pending refunds."""
    pending = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM refunds WHERE order_id = $1 AND status = ANY($2)",
        order["id"], list(RESERVED),
    )  # fmt: skip
    return int(order["captured_amount"]) - int(order["refunded_amount"]) - int(pending)


async def reserve_refund(
    conn: Connection, order: asyncpg.Record, amount: int | None, *, requested_by: str,
    reason: str | None,
) -> asyncpg.Record:  # fmt: skip
    """A pending refund (``amount`` None: all that is left), if it fits in what was captured
    minus what is refunded or being refunded. ``order`` must be locked (`lock`) in this
    transaction: parallel refunds queue on that lock, so together they never exceed the
    capture."""
    left = await refundable(conn, order)
    if amount is None:
        amount = left
    if amount <= 0 or amount > left:
        raise RefundTooLarge(left)
    refund = await conn.fetchrow(
        """INSERT INTO refunds (order_id, amount, currency, reason, requested_by)
           VALUES ($1, $2, $3, $4, $5) RETURNING *""",
        order["id"], amount, order["currency"], reason, requested_by,
    )  # fmt: skip
    assert refund is not None
    await record(
        conn,
        int(order["id"]),
        "refund_requested",
        requested_by,
        detail={"refund_id": refund["id"], "amount": amount, "reason": reason},
    )
    return refund


async def succeed_refund(
    conn: Connection, order: asyncpg.Record, refund: asyncpg.Record, *, fee_bps: int,
    actor: str, provider_ref: str | None = None,
) -> None:  # fmt: skip
    """Book a refund the provider confirmed: the order's refunded amount and state, and a
    ledger row returning the fee in proportion (cumulatively rounded, so a full refund
    returns exactly the whole fee)."""
    captured = int(order["captured_amount"])
    before = int(order["refunded_amount"])
    after = before + int(refund["amount"])
    fee_captured = captured * fee_bps // 10_000
    fee_back = fee_captured * after // captured - fee_captured * before // captured
    await conn.execute(
        """UPDATE refunds SET status = 'succeeded', provider_ref = coalesce($2, provider_ref)
            WHERE id = $1""",
        refund["id"], provider_ref,
    )  # fmt: skip
    to_status = "refunded" if after == captured else "partially_refunded"
    await conn.execute("UPDATE orders SET refunded_amount = $2, status = $3 WHERE id = $1",
                       order["id"], after, to_status)  # fmt: skip
    amount = int(refund["amount"])
    await conn.execute(
        """INSERT INTO ledger_entries (order_id, refund_id, creator_id, kind, amount,
                                       platform_fee, creator_share, currency)
           VALUES ($1, $2, $3, 'refund', $4, $5, $6, $7)""",
        order["id"], refund["id"], order["creator_id"], -amount, -fee_back,
        -(amount - fee_back), order["currency"],
    )  # fmt: skip
    await record(
        conn,
        int(order["id"]),
        "refunded",
        actor,
        from_status=str(order["status"]),
        to_status=to_status,
        detail={"refund_id": refund["id"], "amount": amount},
    )


async def fail_refund(conn: Connection, order_id: int, refund_id: int, message: str,
                      actor: str) -> None:  # fmt: skip
    """A refund that will not happen: its amount is refundable again. Locks the order first
    (as every refund change does: one lock order, no deadlock with apply_event)."""
    await lock(conn, order_id)
    failed = await conn.fetchval(
        """UPDATE refunds SET status = 'failed', message = $2
            WHERE id = $1 AND status = ANY($3) RETURNING id""",
        refund_id, message[:500], list(RESERVED),
    )  # fmt: skip
    if failed is not None:
        await record(conn, order_id, "refund_failed", actor,
                     detail={"refund_id": refund_id, "message": message[:500]})  # fmt: skip


async def refund_unknown(conn: Connection, order_id: int, refund_id: int, message: str,
                         actor: str) -> None:  # fmt: skip
    """The provider may or may not have refunded (its answer was lost) and the request cannot
    safely be sent again: the amount stays reserved and the order is flagged for review."""
    order = await lock(conn, order_id)
    assert order is not None
    changed = await conn.fetchval(
        """UPDATE refunds SET status = 'unknown', message = $2
            WHERE id = $1 AND status = 'pending' RETURNING id""",
        refund_id, message[:500],
    )  # fmt: skip
    if changed is not None:
        reason = f"refund {refund_id}: the provider's answer was lost; check its back office"
        await _flag(conn, order, reason, actor, {"refund_id": refund_id, "message": message[:500]})


async def refunds_of(db: Executor, order_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, amount, currency, status, provider_ref, reason, message, requested_by,
                  created_at, updated_at
             FROM refunds WHERE order_id = $1 ORDER BY id""",
        order_id,
    )


async def events_of(db: Executor, order_id: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT kind, from_status, to_status, actor, detail, created_at
             FROM order_events WHERE order_id = $1 ORDER BY id""",
        order_id,
    )


# --- lists, entitlements, earnings ---


async def list_orders(
    db: Executor, *, user_id: int | None = None, creator_id: int | None = None,
    status: str | None = None, review: bool = False, before_id: int | None, limit: int,
) -> list[asyncpg.Record]:  # fmt: skip
    return await db.fetch(
        f"""SELECT {ORDER_COLUMNS} FROM orders
             WHERE ($1::bigint IS NULL OR user_id = $1)
               AND ($2::bigint IS NULL OR creator_id = $2)
               AND ($3::text IS NULL OR status = $3)
               AND (NOT $4 OR review_reason IS NOT NULL)
               AND ($5::bigint IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6""",
        user_id, creator_id, status, review, before_id, limit,
    )  # fmt: skip


async def entitled(
    db: Executor, user_id: int, *, live_id: int | None = None, video_id: int | None = None
) -> bool:
    if live_id is not None:
        return bool(await db.fetchval(
            """SELECT EXISTS (SELECT 1 FROM orders WHERE live_id = $1 AND user_id = $2
                               AND item_type = 'live_ticket'
                               AND status IN ('paid', 'partially_refunded'))""",
            live_id, user_id,
        ))  # fmt: skip
    return bool(await db.fetchval(
        """SELECT EXISTS (SELECT 1 FROM orders WHERE video_id = $1 AND user_id = $2
                           AND item_type = 'video' AND status IN ('paid', 'partially_refunded'))""",
        video_id, user_id,
    ))  # fmt: skip


async def earnings(db: Executor, creator_id: int) -> list[asyncpg.Record]:
    """Per currency: gross captures, refunds, the platform's fees and the creator's net."""
    return await db.fetch(
        """SELECT currency,
                  coalesce(sum(amount) FILTER (WHERE kind = 'capture'), 0) AS gross,
                  coalesce(-sum(amount) FILTER (WHERE kind = 'refund'), 0) AS refunded,
                  coalesce(sum(platform_fee), 0) AS platform_fees,
                  coalesce(sum(creator_share), 0) AS net,
                  count(*) FILTER (WHERE kind = 'capture') AS sales
             FROM ledger_entries WHERE creator_id = $1
            GROUP BY currency ORDER BY currency""",
        creator_id,
    )


async def open_orders(db: Executor, *, older_than_s: float, limit: int) -> list[asyncpg.Record]:
    """Orders still waiting for their provider (the reconciler's list), oldest first."""
    return await db.fetch(
        f"""SELECT {ORDER_COLUMNS} FROM orders
             WHERE status IN ('created', 'pending')
               AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2""",
        older_than_s, limit,
    )  # fmt: skip


async def claim_stuck_refunds(
    db: Executor, *, older_than_s: float, limit: int
) -> list[asyncpg.Record]:
    """Refunds a retryable provider error left unsent-for-sure (pending, with no provider id),
    for the reconciler to send again with the same idempotency key. Claimed: ``updated_at``
    moves, so another process's reconciler leaves them for the next interval. Refunds the
    provider accepted as pending (they have its id) wait for its webhook instead."""
    return await db.fetch(
        """UPDATE refunds SET updated_at = now() WHERE id IN (
               SELECT id FROM refunds
                WHERE status = 'pending' AND provider_ref IS NULL
                  AND updated_at < now() - make_interval(secs => $1)
                ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING id, order_id""",
        older_than_s, limit,
    )  # fmt: skip
