"""The payments API end to end with the sandbox provider: the real app in-process, a real
PostgreSQL, the sandbox's hosted page and its signed notifications (signed exactly as the
sandbox signs them: ``Sandbox-Signature: t=<unix>,v1=<HMAC-SHA256 of "t.body">``).

Nothing is mocked: the sandbox is a provider that lives inside streamd. Stripe and ECPay are
tested against local fakes of their HTTP APIs in test_stripe.py and test_ecpay.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.web.api_helpers import Api, MakeApi, User
from web.payments.provider import MAX_WEBHOOK_BYTES
from web.payments.sandbox import SIGNATURE_HEADER, SandboxProvider, sign_body

WEBHOOK = "/api/payments/webhooks/sandbox"


def sandbox(api: Api) -> SandboxProvider:
    provider = api.app.state.payments.providers["sandbox"]
    assert isinstance(provider, SandboxProvider)
    return provider


async def buy(
    api: Api, buyer: User, item: dict[str, Any], *, key: str | None = None, **extra: Any
) -> httpx.Response:
    body = {"item": item, "currency": "USD", "provider": "sandbox", **extra}
    headers = {**buyer.auth, "Idempotency-Key": key or str(uuid.uuid4())}
    return await api.client.post("/api/orders", json=body, headers=headers)


async def pay_on_page(api: Api, checkout_url: str, choice: str = "pay") -> httpx.Response:
    """What the buyer's browser does: open the hosted page, press a button."""
    page = await api.client.get(checkout_url)
    assert page.status_code == 200, page.text
    token = parse_qs(urlsplit(checkout_url).query)["token"][0]
    return await api.client.post(
        "/sandbox/checkout", data={"token": token, "choice": choice}, follow_redirects=False
    )


def notification(reference: str, amount: int, *, event_id: str | None = None,
                 currency: str = "USD") -> bytes:  # fmt: skip
    return json.dumps({
        "id": event_id or f"sbx_evt_{uuid.uuid4().hex}", "type": "payment.succeeded",
        "reference": reference, "payment_id": "sbx_pay_1", "amount": amount,
        "currency": currency, "message": None,
    }).encode()  # fmt: skip


def signed(secret: bytes, body: bytes, at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    return {"content-type": "application/json", SIGNATURE_HEADER: sign_body(secret, body, stamp)}


async def age_refunds(api: Api) -> None:
    """Make every refund an hour old (past the trigger that keeps updated_at current)."""
    async with api.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE refunds DISABLE TRIGGER refunds_updated_at")
        await conn.execute("UPDATE refunds SET updated_at = now() - interval '1 hour'")
        await conn.execute("ALTER TABLE refunds ENABLE TRIGGER refunds_updated_at")


async def order_row(api: Api, order_id: int) -> asyncpg.Record:
    row = await api.pool.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    assert row is not None
    return row


async def paid_order(api: Api, buyer: User, live_id: int) -> dict[str, Any]:
    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live_id})
    assert r.status_code == 201, r.text
    done = await pay_on_page(api, r.json()["checkout"]["url"])
    assert done.status_code == 303
    order = await api.client.get(f"/api/orders/{r.json()['order']['id']}", headers=buyer.auth)
    assert order.json()["status"] == "paid"
    body: dict[str, Any] = order.json()
    return body


async def test_a_ticket_bought_with_the_sandbox_unlocks_the_live(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    assert live["price"] == {"amount": 499, "currency": "USD", "display": "US$4.99"}

    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 402
    assert r.json()["error"]["details"]["price"]["display"] == "US$4.99"
    r = await api.client.post(f"/api/lives/{live['id']}/chat/ticket", headers=buyer.auth)
    assert r.status_code == 402

    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})
    assert r.status_code == 201, r.text
    order, checkout = r.json()["order"], r.json()["checkout"]
    assert order["status"] == "pending" and order["amount"] == 499
    assert checkout["method"] == "GET" and checkout["url"].startswith("/sandbox/checkout?")
    page = await api.client.get(checkout["url"])
    assert "US$4.99" in page.text and page.headers["content-security-policy"]

    done = await pay_on_page(api, checkout["url"])
    assert done.status_code == 303
    assert done.headers["location"] == f"/payments/{order['id']}?return=1"

    r = await api.client.get(f"/api/orders/{order['id']}", headers=buyer.auth)
    detail = r.json()
    assert detail["status"] == "paid" and detail["captured_amount"] == 499
    assert [e["kind"] for e in detail["events"]] == ["created", "checkout", "captured"]
    assert detail["events"][2]["actor"].startswith("sandbox:sbx_evt_")
    assert detail["checkout"] is None and detail["can_refund"] is False
    mail = await api.last_mail(buyer.email, "payment_receipt")
    assert "US$4.99" in mail["body"] and f"/payments/{order['id']}" in mail["body"]

    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 200 and r.json()["private"] is True
    cookie = r.headers["set-cookie"]
    assert f"streamd_live_{live['id']}=" in cookie and f"Path=/hls/{live['id']}/" in cookie
    assert "HttpOnly" in cookie
    r = await api.client.post(f"/api/lives/{live['id']}/chat/ticket", headers=buyer.auth)
    assert r.status_code == 200

    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_owned"

    r = await api.client.get("/api/payments/earnings", headers=creator.auth)
    assert r.json() == {"fee_bps": 1000, "items": [{
        "currency": "USD", "gross": 499, "refunded": 0, "platform_fees": 49, "net": 450,
        "sales": 1}]}  # fmt: skip
    sales = await api.client.get("/api/orders?role=seller", headers=creator.auth)
    assert [o["id"] for o in sales.json()["items"]] == [order["id"]]
    mine = await api.client.get("/api/orders", headers=buyer.auth)
    assert [o["id"] for o in mine.json()["items"]] == [order["id"]]
    assert (await api.client.get("/api/orders?role=all", headers=buyer.auth)).status_code == 403
    stranger = await api.make_user()
    r = await api.client.get(f"/api/orders/{order['id']}", headers=stranger.auth)
    assert r.status_code == 404


async def test_declined_and_canceled_checkouts(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 1000, "currency": "USD"})
    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})
    declined = await pay_on_page(api, r.json()["checkout"]["url"], "decline")
    assert declined.status_code == 303
    order = await api.client.get(f"/api/orders/{r.json()['order']['id']}", headers=buyer.auth)
    assert order.json()["status"] == "failed"

    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})
    gave_up = await pay_on_page(api, r.json()["checkout"]["url"], "cancel")
    assert gave_up.headers["location"].endswith(f"/payments/{r.json()['order']['id']}?canceled=1")
    order_id = r.json()["order"]["id"]
    r = await api.client.post(f"/api/orders/{order_id}/cancel", headers=buyer.auth)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    r = await api.client.post(f"/api/orders/{order_id}/cancel", headers=buyer.auth)
    assert r.status_code == 409
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 402


async def test_the_idempotency_key_returns_the_same_order_or_a_422(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    item = {"type": "live_ticket", "live_id": live["id"]}
    first = await buy(api, buyer, item, key="k-1")
    again = await buy(api, buyer, item, key="k-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    assert again.json()["checkout"] == first.json()["checkout"]

    other = await buy(api, buyer, item, key="k-1", provider="sandbox", currency="TWD")
    assert other.status_code == 422
    assert other.json()["error"]["code"] in ("idempotency_conflict", "validation_error")
    r = await api.client.post(
        "/api/orders", headers={**buyer.auth, "Idempotency-Key": "k-1"},
        json={"item": item, "currency": "USD", "provider": "sandbox", "message": "hi"},
    )  # fmt: skip
    assert r.status_code == 422  # a message is for tips: refused before the key is looked at
    on_air = await api.create_live(creator)  # free: tips need no ticket
    await api.pool.execute("UPDATE lives SET status = 'live' WHERE id = $1", on_air["id"])
    tip = {"type": "tip", "live_id": on_air["id"]}
    assert (await buy(api, buyer, tip, key="t-1", amount=500)).status_code == 201
    reused = await buy(api, buyer, tip, key="t-1", amount=600)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_conflict"
    keyless = {"item": item, "currency": "USD", "provider": "sandbox"}
    r = await api.client.post("/api/orders", headers=buyer.auth, json=keyless)
    assert r.status_code == 422 and "Idempotency-Key" in r.text
    # Another user's identical key is theirs: keys are per buyer.
    someone = await api.make_user()
    assert (await buy(api, someone, item, key="k-1")).status_code == 201
    count = await api.pool.fetchval("SELECT count(*) FROM orders WHERE idempotency_key = 'k-1'")
    assert count == 2


async def test_orders_that_cannot_be_made(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    sold = await api.create_live(creator, price={"amount": 15000, "currency": "TWD"})
    free = await api.create_live(creator)
    cases = [
        (creator, {"type": "live_ticket", "live_id": sold["id"]}, {"currency": "TWD"}, 409),
        (buyer, {"type": "live_ticket", "live_id": free["id"]}, {}, 409),
        (buyer, {"type": "live_ticket", "live_id": sold["id"]}, {}, 422),  # USD for a TWD item
        (buyer, {"type": "live_ticket", "live_id": sold["id"]},
         {"currency": "TWD", "provider": "stripe"}, 422),  # not enabled here
        (buyer, {"type": "live_ticket", "live_id": 999999}, {}, 404),
        (buyer, {"type": "video", "video_id": 999999}, {}, 404),
        (buyer, {"type": "tip", "live_id": sold["id"]}, {"amount": 500}, 409),  # not on air
        (buyer, {"type": "live_ticket", "video_id": 1}, {}, 422),
    ]  # fmt: skip
    for who, item, extra, status in cases:
        r = await buy(api, who, item, **extra)
        assert r.status_code == status, (item, extra, r.text)
        assert r.json()["error"]["code"]
    await api.pool.execute("UPDATE lives SET status = 'live' WHERE id = $1", sold["id"])
    r = await buy(api, buyer, {"type": "tip", "live_id": sold["id"]}, amount=99)
    assert r.status_code == 422 and "US$1.00" in r.text  # below the USD minimum
    r = await buy(api, buyer, {"type": "tip", "live_id": sold["id"]}, amount=150, currency="TWD")
    assert r.status_code == 422  # TWD tips are whole dollars, at least NT$30
    r = await buy(api, buyer, {"type": "tip", "live_id": sold["id"]}, amount=500)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ticket_required"
    assert await api.pool.fetchval("SELECT count(*) FROM orders") == 0
    r = await api.client.patch(f"/api/lives/{free['id']}", headers=creator.auth,
                               json={"price": {"amount": 150, "currency": "TWD"}})  # fmt: skip
    assert r.status_code == 422  # whole New Taiwan dollars only


async def test_forged_stale_oversized_and_unknown_notifications_change_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})
    order = r.json()["order"]
    body = notification(order["reference"], 499)
    secret = sandbox(api)._secret
    unknown = notification("NoSuchOrder", 499)
    caplog.set_level(logging.WARNING, logger="web.payments.webhooks")
    cases = [
        ("forged", body, signed(b"not the key", body), 400, "bad_signature"),
        ("unsigned", body, {"content-type": "application/json"}, 400, "bad_signature"),
        ("tampered", body.replace(b"499", b"001"), signed(secret, body), 400, "bad_signature"),
        ("stale", body, signed(secret, body, time.time() - 3600), 400, "stale"),
        ("future", body, signed(secret, body, time.time() + 3600), 400, "stale"),
        ("malformed", b"{not json", signed(secret, b"{not json"), 400, "malformed"),
        ("oversized", b"x" * (MAX_WEBHOOK_BYTES + 1), signed(secret, b"x"), 413, "too_large"),
    ]  # fmt: skip
    for name, content, headers, status, code in cases:
        r = await api.client.post(WEBHOOK, content=content, headers=headers)
        assert r.status_code == status, (name, r.text)
        assert r.json()["error"]["code"] == code, name
    assert (await api.client.post("/api/payments/webhooks/paypal", content=body)).status_code == 404
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert await api.pool.fetchval("SELECT count(*) FROM ledger_entries") == 0
    assert (await order_row(api, order["id"]))["status"] == "pending"
    logged = [rec.getMessage() for rec in caplog.records]
    assert any("rejected (bad_signature)" in m for m in logged)
    assert any("rejected (stale)" in m for m in logged)
    # Genuine, but naming no order here (another application's): recorded, acknowledged (a
    # provider that kept resending it would end up disabling the endpoint), nothing applied.
    for _ in range(2):
        r = await api.client.post(WEBHOOK, content=unknown, headers=signed(secret, unknown))
        assert r.status_code == 200
    outcomes = await api.pool.fetch("SELECT outcome, order_id FROM webhook_events")
    assert [(o["outcome"], o["order_id"]) for o in outcomes] == [("unknown_order", None)]
    # The genuine notification still goes through afterwards.
    r = await api.client.post(WEBHOOK, content=body, headers=signed(secret, body))
    assert r.status_code == 200 and r.json() == {"received": True}
    assert (await order_row(api, order["id"]))["status"] == "paid"


async def test_fifty_concurrent_deliveries_and_replays_have_one_effect(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    order = (await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})).json()["order"]
    body = notification(order["reference"], 499, event_id="sbx_evt_once")
    headers = signed(sandbox(api)._secret, body)
    answers = await asyncio.gather(
        *(api.client.post(WEBHOOK, content=body, headers=headers) for _ in range(50))
    )
    assert [a.status_code for a in answers] == [200] * 50
    replay = await api.client.post(WEBHOOK, content=body, headers=headers)
    assert replay.status_code == 200  # acknowledged, so the provider stops resending
    # A second event id for the same capture (a provider's retry under a new id) is no second sale.
    other = notification(order["reference"], 499, event_id="sbx_evt_other")
    assert (
        await api.client.post(WEBHOOK, content=other, headers=signed(sandbox(api)._secret, other))
    ).status_code == 200
    assert await api.pool.fetchval("SELECT count(*) FROM ledger_entries") == 1
    outcomes = await api.pool.fetch("SELECT event_id, outcome FROM webhook_events ORDER BY id")
    assert [(r["event_id"], r["outcome"]) for r in outcomes] == [
        ("sbx_evt_once", "applied"), ("sbx_evt_other", "duplicate_effect")]  # fmt: skip
    events = await api.pool.fetchval(
        "SELECT count(*) FROM order_events WHERE order_id = $1 AND kind = 'captured'", order["id"]
    )
    assert events == 1
    sent = await api.pool.fetchval(
        "SELECT count(*) FROM email_outbox WHERE kind = 'payment_receipt'"
    )
    assert sent == 1


async def test_an_event_with_another_amount_is_flagged_never_paid(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    admin = await api.make_user("admin")
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    order = (await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})).json()["order"]
    secret = sandbox(api)._secret
    for amount, currency in ((1, "USD"), (499, "TWD")):
        body = notification(order["reference"], amount, currency=currency)
        assert (
            await api.client.post(WEBHOOK, content=body, headers=signed(secret, body))
        ).status_code == 200
    row = await order_row(api, order["id"])
    assert row["status"] == "pending" and row["review_reason"]
    assert await api.pool.fetchval("SELECT count(*) FROM ledger_entries") == 0
    r = await api.client.get("/api/orders?role=all&review=true", headers=admin.auth)
    assert [o["id"] for o in r.json()["items"]] == [order["id"]]
    assert r.json()["items"][0]["review_reason"].startswith("captured 499 TWD")
    r = await api.client.get(f"/api/orders/{order['id']}", headers=buyer.auth)
    assert r.json()["review_reason"] is None  # the seller's and admins' business
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 402


async def test_parallel_refunds_never_exceed_the_capture_and_a_full_refund_revokes(
    api: Api,
) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    admin = await api.make_user("admin")
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    order = await paid_order(api, buyer, live["id"])
    url = f"/api/orders/{order['id']}/refunds"

    r = await api.client.post(url, json={"amount": 100}, headers=buyer.auth)
    assert r.status_code == 403  # buyers ask the seller; they do not refund themselves
    answers = await asyncio.gather(*(
        api.client.post(url, json={"amount": 200, "reason": "race"}, headers=admin.auth)
        for _ in range(10)
    ))  # fmt: skip
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200] + [409] * 8
    refused = next(a for a in answers if a.status_code == 409).json()["error"]
    assert refused["code"] == "refund_too_large" and refused["details"]["refundable"] in (99, 299)
    row = await order_row(api, order["id"])
    assert row["status"] == "partially_refunded" and row["refunded_amount"] == 400
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 200  # a partial refund keeps the ticket

    r = await api.client.post(url, json={}, headers=creator.auth)  # the rest, by the seller
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["status"] == "refunded" and detail["refunded_amount"] == 499
    assert [f["amount"] for f in detail["refunds"]] == [200, 200, 99]
    assert detail["can_refund"] is False and detail["refundable"] == 0
    r = await api.client.post(url, json={}, headers=admin.auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_refundable"
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 402
    await api.last_mail(buyer.email, "refund_receipt")

    # The ledger and the orders reconcile: what moved equals captured minus refunded.
    ledger = await api.pool.fetchrow(
        "SELECT sum(amount) AS amount, sum(platform_fee) AS fee, sum(creator_share) AS share "
        "FROM ledger_entries WHERE order_id = $1",
        order["id"],
    )
    assert (ledger["amount"], ledger["fee"], ledger["share"]) == (0, 0, 0)
    r = await api.client.get("/api/payments/earnings", headers=creator.auth)
    assert r.json()["items"] == [{"currency": "USD", "gross": 499, "refunded": 499,
                                  "platform_fees": 0, "net": 0, "sales": 1}]  # fmt: skip


async def test_sellers_refund_only_within_the_window(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    order = await paid_order(api, buyer, live["id"])
    await api.pool.execute(
        "UPDATE orders SET paid_at = now() - interval '15 days' WHERE id = $1", order["id"]
    )
    r = await api.client.get(f"/api/orders/{order['id']}", headers=creator.auth)
    assert r.json()["can_refund"] is False and r.json()["buyer"] == buyer.username
    r = await api.client.post(f"/api/orders/{order['id']}/refunds", json={}, headers=creator.auth)
    assert r.status_code == 403
    assert (await order_row(api, order["id"]))["refunded_amount"] == 0


async def test_a_tip_is_shown_in_chat_with_its_amount(api: Api, database_url: str) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator)
    await api.pool.execute("UPDATE lives SET status = 'live' WHERE id = $1", live["id"])
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener("chat", lambda *args: heard.put_nowait(args[3]))
    try:
        r = await buy(api, buyer, {"type": "tip", "live_id": live["id"]}, amount=500,
                      message="great show!")  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["order"]["tip_message"] == "great show!"
        await pay_on_page(api, r.json()["checkout"]["url"])
        (event,) = json.loads(await asyncio.wait_for(heard.get(), 5))
    finally:
        await listener.close()
    assert event["t"] == "msg" and event["text"] == "great show!"
    assert event["tip"] == {"amount": 500, "currency": "USD", "display": "US$5.00"}
    assert event["user_id"] == buyer.id
    row = await api.pool.fetchrow("SELECT content, tip, order_id FROM chat_messages")
    assert row["order_id"] == r.json()["order"]["id"]
    earned = await api.client.get("/api/payments/earnings", headers=creator.auth)
    assert earned.json()["items"][0]["net"] == 450


async def test_the_reconciler_expires_unpaid_orders(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    r = await buy(api, buyer, {"type": "live_ticket", "live_id": live["id"]})
    order_id = r.json()["order"]["id"]
    checkout = r.json()["checkout"]["url"]
    assert await api.app.state.payments.reconcile_once() == 0  # young orders are left alone
    await api.pool.execute(
        "UPDATE orders SET created_at = now() - interval '2 hours', "
        "expires_at = now() - interval '1 minute' WHERE id = $1",
        order_id,
    )
    assert await api.app.state.payments.reconcile_once() == 1
    detail = (await api.client.get(f"/api/orders/{order_id}", headers=buyer.auth)).json()
    assert detail["status"] == "expired" and detail["events"][-1]["actor"] == "reconciler"
    assert await api.app.state.payments.reconcile_once() == 0
    # The sandbox page of an expired checkout only says so.
    assert checkout


async def test_the_config_lists_what_a_checkout_page_offers(make_api: MakeApi) -> None:
    api = await make_api(payments_fee_bps=500)
    r = await api.client.get("/api/payments/config")
    assert r.status_code == 200
    body = r.json()
    assert body["providers"] == [{"name": "sandbox", "currencies": ["TWD", "USD"]}]
    assert body["fee_bps"] == 500
    assert {c["code"]: c["tip_minimum"] for c in body["currencies"]} == {"USD": 100, "TWD": 3000}


async def test_tips_follow_the_chat_s_rules(api: Api) -> None:
    creator, fan = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    await api.pool.execute("UPDATE lives SET status = 'live' WHERE id = $1", live["id"])
    tip = {"type": "tip", "live_id": live["id"]}
    r = await buy(api, fan, tip, amount=500)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ticket_required"
    await paid_order(api, fan, live["id"])
    await api.pool.execute(
        "INSERT INTO chat_sanctions (live_id, user_id, kind, until) "
        "VALUES ($1, $2, 'mute', now() + interval '1 hour')",
        live["id"], fan.id,
    )  # fmt: skip
    r = await buy(api, fan, tip, amount=500)
    assert r.status_code == 403
    await api.pool.execute("DELETE FROM chat_sanctions")
    await api.client.patch(f"/api/lives/{live['id']}", headers=creator.auth,
                           json={"chat_enabled": False})  # fmt: skip
    r = await buy(api, fan, tip, amount=500)
    assert r.status_code == 409 and r.json()["error"]["code"] == "chat_off"
    await api.client.patch(f"/api/lives/{live['id']}", headers=creator.auth,
                           json={"chat_enabled": True})  # fmt: skip
    assert (await buy(api, fan, tip, amount=500)).status_code == 201
