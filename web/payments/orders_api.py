"""``/api/orders`` and ``/api/payments``: buying, the buyer's and seller's order views, refunds,
earnings, and what a checkout page needs to know (providers, currencies, minimums).

Creating an order: its row (and the Idempotency-Key) commits under the order's reference lock,
the provider's checkout is asked for outside any transaction (a slow provider holds no
connection), then the order becomes pending with the checkout's URL. A provider that fails
makes the order failed (502); a webhook that beats the checkout's answer wins (the order keeps
the state the event gave it).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from datetime import datetime, timedelta

import asyncpg
from starlette.responses import JSONResponse

from db import chat as chat_db
from db import lives, orders, users, videos
from db.pools import Database
from web.api import Call, Endpoint, HeaderParam, decode_cursor, paginate
from web.authn import CurrentUser
from web.errors import ApiError, field_error
from web.payments.money import MINOR_UNITS, WHOLE_UNITS_ONLY, AmountError, check_amount, display
from web.payments.provider import CheckoutRequest, ProviderError
from web.payments.schemas import (
    CurrencyOut,
    EarningsOut,
    EarningsRowOut,
    OrderCreatedOut,
    OrderCreateIn,
    OrderDetailOut,
    OrderListOut,
    OrderListQuery,
    OrderOut,
    PaymentsConfigOut,
    ProviderOut,
    RefundIn,
)
from web.payments.service import Payments

log = logging.getLogger(__name__)

_ALPHABET = string.ascii_letters + string.digits
IDEMPOTENCY_HEADER = "idempotency-key"


def payments_of(call: Call) -> Payments:
    payments: Payments = call.request.app.state.payments
    return payments


def new_reference() -> str:
    """20 random alphanumerics (~119 bits): ECPay's MerchantTradeNo allows no more."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


def _idempotency_key(call: Call) -> str:
    key = call.request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        raise field_error("Idempotency-Key", "send an Idempotency-Key header (e.g. a UUID)")
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise field_error("Idempotency-Key", "must be 1 to 255 printable characters")
    return key


class _Item:
    def __init__(self, creator_id: int, description: str, amount: int, currency: str) -> None:
        self.creator_id = creator_id
        self.description = description[:200]
        self.amount = amount
        self.currency = currency


def _price(row: asyncpg.Record, body: OrderCreateIn) -> tuple[int, str]:
    if row["price_amount"] is None:
        raise ApiError(409, "not_for_sale", "this is free: there is nothing to buy")
    currency = str(row["price_currency"])
    if body.currency != currency:
        raise field_error("currency", f"this is sold in {currency}")
    return int(row["price_amount"]), currency


async def _item(call: Call, body: OrderCreateIn) -> _Item:
    """What is bought, from whom, at what price; refuses what cannot be bought by the caller."""
    user = call.user
    db = call.db.primary
    if body.item.type == "video":
        assert body.item.video_id is not None
        video = await videos.get_full(db, body.item.video_id)
        if (
            video is None
            or not video["is_active"]
            or (
                video["user_id"] != user.id
                and (video["status"] != "ready" or video["visibility"] == "private")
            )
        ):
            raise ApiError(404, "not_found", "no such video")
        if video["user_id"] == user.id:
            raise ApiError(409, "own_item", "this is your own video")
        if video["live_id"] is not None:
            raise ApiError(409, "not_for_sale", "a recording is sold with its live's ticket")
        amount, currency = _price(video, body)
        if await orders.entitled(db, user.id, video_id=int(video["id"])):
            raise ApiError(409, "already_owned", "you already bought this video")
        return _Item(int(video["user_id"]), f"Video: {video['title']}", amount, currency)
    assert body.item.live_id is not None
    live = await lives.get_public(db, body.item.live_id)
    if live is None or not live["owner_active"]:
        raise ApiError(404, "not_found", "no such live")
    if live["user_id"] == user.id:
        raise ApiError(409, "own_item", "this is your own live")
    if body.item.type == "tip":
        if live["status"] != "live":
            raise ApiError(409, "not_live", "tips are for lives on air")
        assert body.amount is not None
        minimum = dict(call.settings.payments_tip_minimum).get(body.currency, 1)
        if body.amount < minimum:
            raise field_error("amount", f"the smallest tip is {display(minimum, body.currency)}")
        await _may_post_tip(call, live)
        return _Item(int(live["user_id"]), f"Tip: {live['title']}", body.amount, body.currency)
    # An ended live's ticket still sells: it opens the live's recordings.
    amount, currency = _price(live, body)
    if await orders.entitled(db, user.id, live_id=int(live["id"])):
        raise ApiError(409, "already_owned", "you already have a ticket for this live")
    return _Item(int(live["user_id"]), f"Ticket: {live['title']}", amount, currency)


async def _may_post_tip(call: Call, live: asyncpg.Record) -> None:
    """A tip is a chat message: the chat's rules hold (on, not muted or banned, a ticket for
    a sold live's chat)."""
    db, user_id = call.db.primary, call.user.id
    if not live["chat_enabled"]:
        raise ApiError(409, "chat_off", "this live's chat is off: tips are shown there")
    sanctions = await chat_db.active_sanctions(db, int(live["id"]))
    if any(s["user_id"] == user_id for s in sanctions):
        raise ApiError(403, "forbidden", "you may not post in this live's chat now")
    if live["price_amount"] is not None and not await orders.entitled(
        db, user_id, live_id=int(live["id"])
    ):
        raise ApiError(409, "ticket_required", "buy a ticket to this live before tipping")


def _request_hash(body: OrderCreateIn) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def _order_out(row: asyncpg.Record, user: CurrentUser) -> OrderOut:
    return OrderOut.from_row(row, viewer_id=user.id, is_admin=user.is_admin)


async def create_order(call: Call) -> JSONResponse:
    body = await call.body(OrderCreateIn)
    key = _idempotency_key(call)
    payments = payments_of(call)
    provider = payments.providers.get(body.provider)
    if provider is None:
        choices = ", ".join(payments.providers) or "none"
        raise field_error("provider", f"not offered here (offered: {choices})")
    if body.currency not in provider.currencies:
        raise field_error("currency", f"{body.provider} does not charge in {body.currency}")
    item = await _item(call, body)
    try:
        check_amount(item.amount, item.currency)
    except AmountError as exc:
        raise field_error("amount", str(exc)) from None
    user = call.user
    reference = new_reference()
    async with call.db.primary.acquire() as conn, conn.transaction():
        await orders.lock_reference(conn, reference)
        try:
            row, created = await orders.create(
                conn, reference=reference, user_id=user.id, creator_id=item.creator_id,
                item_type=body.item.type, live_id=body.item.live_id,
                video_id=body.item.video_id, description=item.description,
                tip_message=body.message, amount=item.amount, currency=item.currency,
                provider=body.provider, idempotency_key=key, request_hash=_request_hash(body),
                ttl_s=call.settings.payments_order_ttl,
            )  # fmt: skip
        except orders.IdempotencyConflict:
            raise ApiError(
                422, "idempotency_conflict",
                "this Idempotency-Key was used for another order: use a new key per order",
            ) from None  # fmt: skip
    if not created:
        out = _order_out(row, user)
        return JSONResponse(
            OrderCreatedOut(order=out, checkout=out.checkout).model_dump(mode="json")
        )
    row = await _open_checkout(call, row)
    out = _order_out(row, user)
    log.info("payments: order %d (%s) created by user %d: %s %s via %s", row["id"],
             row["reference"], user.id, item.amount, item.currency, body.provider)  # fmt: skip
    created_out = OrderCreatedOut(order=out, checkout=out.checkout)
    return JSONResponse(created_out.model_dump(mode="json"), status_code=201)


async def _open_checkout(call: Call, row: asyncpg.Record) -> asyncpg.Record:
    provider = payments_of(call).providers[str(row["provider"])]
    # The sandbox's pages are this site's: relative URLs, which no Host header can redirect.
    # Real providers need absolute ones: STREAMD_PUBLIC_URL (config.settings insists on it).
    base = "" if provider.name == "sandbox" else (call.settings.public_url or "").rstrip("/")
    order_id = int(row["id"])
    request = CheckoutRequest(
        reference=str(row["reference"]), amount=int(row["amount"]),
        currency=str(row["currency"]), description=str(row["description"]),
        buyer_email=call.user.email,
        return_url=f"{base}/payments/{order_id}?return=1",
        cancel_url=f"{base}/payments/{order_id}?canceled=1",
        notify_url=f"{base}/api/payments/webhooks/{row['provider']}",
        expires_at=row["expires_at"],
    )  # fmt: skip
    try:
        checkout = await provider.create_checkout(request)
    except (ProviderError, AmountError) as exc:
        async with call.db.primary.acquire() as conn, conn.transaction():
            order = await orders.lock(conn, order_id)
            if order is not None and order["status"] == "created":
                await orders.transition(conn, order, "failed", row["provider"], kind="failed",
                                        detail={"message": str(exc)[:500]})  # fmt: skip
        log.warning("payments: checkout of order %d at %s failed: %s", order_id,
                    row["provider"], exc)  # fmt: skip
        raise ApiError(502, "provider_error", f"the payment provider refused: {exc}") from None
    async with call.db.primary.acquire() as conn, conn.transaction():
        updated = await orders.set_checkout(
            conn, order_id, checkout_ref=checkout.provider_ref, url=checkout.url,
            form=checkout.form, actor=str(row["provider"]),
        )  # fmt: skip
        if updated is None:  # an event got there first: the order keeps what it says
            updated = await orders.get(conn, order_id)
    assert updated is not None
    return updated


# --- reading orders ---


async def _visible_order(db: Database, order_id: int, user: CurrentUser) -> asyncpg.Record:
    row = await orders.get(db.primary, order_id)
    if row is None or not (user.is_admin or user.id in (row["user_id"], row["creator_id"])):
        raise ApiError(404, "not_found", "no such order")
    return row


def _refund_deadline(call: Call, row: asyncpg.Record) -> datetime | None:
    if row["paid_at"] is None:
        return None
    deadline: datetime = row["paid_at"] + timedelta(seconds=call.settings.payments_refund_window)
    return deadline


def _may_refund(call: Call, row: asyncpg.Record) -> bool:
    """Admins any paid order; its seller within the refund window."""
    if call.user.is_admin:
        return True
    deadline = _refund_deadline(call, row)
    if call.user.id != row["creator_id"] or deadline is None:
        return False
    return bool(deadline > datetime.now(deadline.tzinfo))


async def _detail(call: Call, row: asyncpg.Record) -> OrderDetailOut:
    db = call.db.primary
    user = call.user
    buyer = None
    if user.is_admin or user.id == row["creator_id"]:
        buyer_row = await users.get_by_id(db, int(row["user_id"]))
        buyer = str(buyer_row["username"]) if buyer_row is not None else None
    left = await orders.refundable(db, row) if row["status"] in orders.CAPTURED else 0
    return OrderDetailOut.build(
        row, viewer_id=user.id, is_admin=user.is_admin, buyer=buyer,
        events=await orders.events_of(db, int(row["id"])),
        refunds=await orders.refunds_of(db, int(row["id"])), refundable=left,
        can_refund=left > 0 and _may_refund(call, row),
        refund_deadline=_refund_deadline(call, row),
    )  # fmt: skip


async def get_order(call: Call) -> OrderDetailOut:
    row = await _visible_order(call.db, call.path_id("order_id"), call.user)
    return await _detail(call, row)


async def list_orders(call: Call) -> OrderListOut:
    query = call.query(OrderListQuery)
    user = call.user
    if query.role == "all" and not user.is_admin:
        raise ApiError(403, "forbidden", "only admins see every order")
    rows = await orders.list_orders(
        call.db.read, user_id=user.id if query.role == "buyer" else None,
        creator_id=user.id if query.role == "seller" else None, status=query.status,
        review=query.review, before_id=decode_cursor(query.cursor), limit=query.limit + 1,
    )  # fmt: skip
    page, cursor = paginate(rows, query.limit)
    return OrderListOut(items=[_order_out(r, user) for r in page], next_cursor=cursor)


async def cancel_order(call: Call) -> OrderDetailOut:
    """The buyer gives up an open order. A payment the provider still captures afterwards
    makes it paid all the same (the money was taken: the buyer gets the item)."""
    order_id = call.path_id("order_id")
    async with call.db.primary.acquire() as conn, conn.transaction():
        row = await orders.lock(conn, order_id)
        if row is None or row["user_id"] != call.user.id:
            raise ApiError(404, "not_found", "no such order")
        if row["status"] not in orders.OPEN:
            raise ApiError(409, "not_open", f"this order is {row['status']}: it cannot be canceled")
        await orders.transition(conn, row, "canceled", f"user:{call.user.id}", kind="canceled")
    log.info("payments: order %d canceled by its buyer", order_id)
    return await get_order(call)


# --- refunds ---


async def refund_order(call: Call) -> OrderDetailOut:
    """Reserve the refund under the order's row lock (parallel refunds queue there and never
    exceed the capture), then ask the provider outside the transaction."""
    body = await call.body(RefundIn)
    order_id = call.path_id("order_id")
    user = call.user
    async with call.db.primary.acquire() as conn, conn.transaction():
        row = await orders.lock(conn, order_id)
        if row is None or not (user.is_admin or user.id in (row["user_id"], row["creator_id"])):
            raise ApiError(404, "not_found", "no such order")
        if not _may_refund(call, row):
            raise ApiError(403, "forbidden", "only admins, and the seller within the refund "
                           "window, can refund this order")  # fmt: skip
        if row["status"] not in orders.CAPTURED or row["status"] == "refunded":
            raise ApiError(409, "not_refundable", f"this order is {row['status']}")
        if body.amount is not None:
            try:
                check_amount(body.amount, str(row["currency"]))
            except AmountError as exc:
                raise field_error("amount", str(exc)) from None
        try:
            refund = await orders.reserve_refund(conn, row, body.amount,
                                                 requested_by=f"user:{user.id}",
                                                 reason=body.reason)  # fmt: skip
        except orders.RefundTooLarge as exc:
            raise ApiError(409, "refund_too_large", str(exc),
                           details={"refundable": exc.refundable}) from None  # fmt: skip
    log.info("payments: refund %d of %d on order %d requested by user %d", refund["id"],
             refund["amount"], order_id, user.id)  # fmt: skip
    try:
        await payments_of(call).run_refund(order_id, int(refund["id"]), actor=f"user:{user.id}")
    except ProviderError as exc:
        raise ApiError(502, "provider_error", f"the payment provider refused: {exc}") from None
    return await get_order(call)


# --- creators and checkout pages ---


async def earnings(call: Call) -> EarningsOut:
    rows = await orders.earnings(call.db.read, call.user.id)
    return EarningsOut(
        fee_bps=call.settings.payments_fee_bps,
        items=[EarningsRowOut(**dict(r)) for r in rows],
    )


async def payments_config(call: Call) -> PaymentsConfigOut:
    settings = call.settings
    minimums = dict(settings.payments_tip_minimum)
    return PaymentsConfigOut(
        providers=[
            ProviderOut(name=p.name, currencies=sorted(p.currencies))  # type: ignore[arg-type]
            for p in payments_of(call).providers.values()
        ],
        currencies=[
            CurrencyOut(
                code=code,
                minor_units=exp,
                whole_units_only=code in WHOLE_UNITS_ONLY,
                tip_minimum=minimums.get(code, 1),
            )
            for code, exp in MINOR_UNITS.items()
        ],
        fee_bps=settings.payments_fee_bps,
        refund_window_seconds=int(settings.payments_refund_window),
        order_ttl_seconds=int(settings.payments_order_ttl),
    )


ORDER = "/api/orders/{order_id:int}"
ENDPOINTS = [
    Endpoint("GET", "/api/payments/config", payments_config,
             "Providers, currencies and tip minimums a checkout page offers", "payments",
             response=PaymentsConfigOut),
    Endpoint("POST", "/api/orders", create_order,
             "Buy a live ticket, a video or a tip: the order and where to pay it", "payments",
             auth="user", body=OrderCreateIn, response=OrderCreatedOut, status=201,
             errors=(404, 409, 502),
             headers=(HeaderParam("Idempotency-Key", (),
                                  "required: the same key and body return the same order; "
                                  "the same key with another body is a 422"),)),
    Endpoint("GET", "/api/orders", list_orders,
             "My purchases, my sales, or every order (admins)", "payments", auth="user",
             query=OrderListQuery, response=OrderListOut, errors=(403,)),
    Endpoint("GET", ORDER, get_order, "An order with its timeline and refunds", "payments",
             auth="user", response=OrderDetailOut, errors=(404,)),
    Endpoint("POST", ORDER + "/cancel", cancel_order, "Give up an unpaid order (its buyer)",
             "payments", auth="user", response=OrderDetailOut, errors=(404, 409)),
    Endpoint("POST", ORDER + "/refunds", refund_order,
             "Refund all or part of a paid order (admins; its seller within the window)",
             "payments", auth="user", body=RefundIn, response=OrderDetailOut,
             errors=(403, 404, 409, 502)),
    Endpoint("GET", "/api/payments/earnings", earnings,
             "My earnings as a seller, per currency, net of refunds and fees", "payments",
             auth="creator", response=EarningsOut),
]  # fmt: skip
