"""Orders paid and refunded through Stripe, the whole way through streamd's API: the app
in-process on a real PostgreSQL, the official ``stripe`` SDK talking HTTP to a local fake of the
Stripe API (tests/web/payments/stripe_fake.py: Stripe's servers cannot be reached from here),
and webhooks signed exactly as Stripe signs them, posted to /api/payments/webhooks/stripe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.api_helpers import Api, MakeApi, User
from tests.web.payments.stripe_fake import StripeFake
from tests.web.payments.test_orders_api import age_refunds

WEBHOOK = "/api/payments/webhooks/stripe"


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    server = StripeFake()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def api(make_api: MakeApi, fake: StripeFake) -> Api:
    return await make_api(
        payments_providers=("stripe", "sandbox"), stripe_secret_key=fake.secret_key,
        stripe_webhook_secret=fake.webhook_secret, stripe_api_base=fake.base_url,
        public_url="https://shop.example",
    )  # fmt: skip


async def stripe_order(api: Api, buyer: User, live_id: int, key: str) -> dict[str, Any]:
    r = await api.client.post(
        "/api/orders", headers={**buyer.auth, "Idempotency-Key": key},
        json={"item": {"type": "live_ticket", "live_id": live_id}, "currency": "USD",
              "provider": "stripe"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def paid_with_stripe(
    api: Api, fake: StripeFake
) -> tuple[User, User, dict[str, Any], dict[str, Any]]:
    """(buyer, admin, live, order): a ticket bought through Stripe, its capture webhook in."""
    creator, buyer = await api.make_user("creator"), await api.make_user()
    admin = await api.make_user("admin")
    live = await api.create_live(creator, price={"amount": 1999, "currency": "USD"})
    order = (await stripe_order(api, buyer, live["id"], f"paid-{live['id']}"))["order"]
    (session_id,) = fake.sessions
    fake.complete_session(session_id)
    assert await post_event(api, fake, fake.events_of("checkout.session.completed")[0]) == "applied"
    return buyer, admin, live, order


async def post_event(api: Api, fake: StripeFake, event: dict[str, Any]) -> str:
    headers, body = fake.webhook(event)
    r = await api.client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 200, r.text
    outcome = await api.pool.fetchval(
        "SELECT outcome FROM webhook_events WHERE event_id = $1", event["id"]
    )
    return str(outcome)  # "None" for an event that names nothing streamd counts


async def status_of(api: Api, order_id: int) -> tuple[str, int]:
    row = await api.pool.fetchrow(
        "SELECT status, refunded_amount FROM orders WHERE id = $1", order_id
    )
    assert row is not None
    return str(row["status"]), int(row["refunded_amount"])


async def test_a_stripe_checkout_paid_and_refunded(api: Api, fake: StripeFake) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    admin = await api.make_user("admin")
    live = await api.create_live(creator, price={"amount": 1999, "currency": "USD"})
    created = await stripe_order(api, buyer, live["id"], "s-1")
    order, checkout = created["order"], created["checkout"]
    assert checkout["method"] == "GET" and checkout["url"].startswith(f"{fake.base_url}/c/pay/cs_")
    (session_id,) = fake.sessions
    sent = fake.sessions[session_id]
    assert sent["client_reference_id"] == order["reference"]
    assert sent["amount_total"] == 1999 and sent["currency"] == "usd"
    assert sent["success_url"].startswith(f"https://shop.example/payments/{order['id']}?return=1")

    fake.complete_session(session_id)
    (completed,) = fake.events_of("checkout.session.completed")
    assert await post_event(api, fake, completed) == "applied"
    assert await status_of(api, order["id"]) == ("paid", 0)
    assert await post_event(api, fake, completed) == "applied"  # a redelivery: acknowledged
    assert await api.pool.fetchval("SELECT count(*) FROM ledger_entries") == 1

    # A partial refund through the API: the SDK's refund call, booked at once (succeeded).
    r = await api.client.post(f"/api/orders/{order['id']}/refunds", json={"amount": 500},
                              headers=admin.auth)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["refunds"][0]["status"] == "succeeded"
    (refund,) = fake.refunds.values()
    assert refund["amount"] == 500 and refund["metadata"]["refund_id"]
    # Stripe then reports that same refund by webhook: counted once, not twice.
    outcomes = [await post_event(api, fake, e) for e in fake.events
                if e["type"] in ("refund.created", "charge.refunded")]  # fmt: skip
    assert "applied" not in outcomes and "duplicate_effect" in outcomes
    assert await status_of(api, order["id"]) == ("partially_refunded", 500)


async def test_a_pending_refund_is_booked_by_its_webhook(api: Api, fake: StripeFake) -> None:
    buyer, admin, live, order = await paid_with_stripe(api, fake)

    fake.refund_status = "pending"
    r = await api.client.post(f"/api/orders/{order['id']}/refunds", json={}, headers=admin.auth)
    assert r.status_code == 200 and r.json()["refunds"][0]["status"] == "pending"
    assert await status_of(api, order["id"]) == ("paid", 0)
    r = await api.client.post(f"/api/orders/{order['id']}/refunds", json={"amount": 1},
                              headers=admin.auth)  # fmt: skip
    assert r.status_code == 409  # the pending refund already holds all that was captured

    # The reconciler leaves a refund Stripe accepted to its webhook: never sent again.
    await age_refunds(api)
    sent = len(fake.requests)
    await api.app.state.payments.reconcile_once()
    assert [r for r in fake.requests[sent:] if r.path.startswith("/v1/refunds")] == []
    (refund_id,) = fake.refunds
    updated = fake.settle_refund(refund_id)
    assert await post_event(api, fake, updated) == "applied"
    assert await status_of(api, order["id"]) == ("refunded", 1999)
    assert await post_event(api, fake, updated) == "applied"  # the same event id again
    assert await status_of(api, order["id"]) == ("refunded", 1999)
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 402


async def test_the_reconciler_finds_a_payment_whose_webhook_never_came(
    api: Api, fake: StripeFake
) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 1999, "currency": "USD"})
    order = (await stripe_order(api, buyer, live["id"], "s-3"))["order"]
    (session_id,) = fake.sessions
    fake.complete_session(session_id)
    await api.pool.execute(
        "UPDATE orders SET created_at = now() - interval '45 minutes', "
        "expires_at = now() - interval '1 minute' WHERE id = $1",
        order["id"],
    )
    # Stripe down: the order stays pending, not expired (the buyer may have paid).
    fake.fail_next(3, status=503)
    assert await api.app.state.payments.reconcile_once() == 0
    assert await status_of(api, order["id"]) == ("pending", 0)
    assert await api.app.state.payments.reconcile_once() == 1
    assert await status_of(api, order["id"]) == ("paid", 0)
    detail = (await api.client.get(f"/api/orders/{order['id']}", headers=buyer.auth)).json()
    assert detail["events"][-1]["actor"] == "reconciler"
    # The webhook arrives at last: no second sale.
    (completed,) = fake.events_of("checkout.session.completed")
    assert await post_event(api, fake, completed) == "duplicate_effect"
    assert await api.pool.fetchval("SELECT count(*) FROM ledger_entries") == 1


async def test_a_forged_stripe_webhook_is_refused(api: Api, fake: StripeFake) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 1999, "currency": "USD"})
    await stripe_order(api, buyer, live["id"], "s-4")
    (session_id,) = fake.sessions
    fake.complete_session(session_id)
    (completed,) = fake.events_of("checkout.session.completed")
    headers, body = fake.webhook(completed, secret="whsec_someone_else")
    r = await api.client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_signature"
    headers, body = fake.webhook(completed, timestamp=1_600_000_000)
    r = await api.client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "stale"
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_a_refund_that_fails_at_stripe_frees_its_amount(api: Api, fake: StripeFake) -> None:
    buyer, admin, live, order = await paid_with_stripe(api, fake)
    fake.refund_status = "pending"
    r = await api.client.post(f"/api/orders/{order['id']}/refunds", json={}, headers=admin.auth)
    assert r.json()["refundable"] == 0
    (refund_id,) = fake.refunds
    failed = fake.settle_refund(refund_id, "failed")
    assert await post_event(api, fake, failed) == "applied"
    detail = (await api.client.get(f"/api/orders/{order['id']}", headers=admin.auth)).json()
    assert detail["refunds"][0]["status"] == "failed" and "lost_or_stolen_card" in (
        detail["refunds"][0]["message"])  # fmt: skip
    assert detail["status"] == "paid" and detail["refundable"] == 1999
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 200  # still the buyer's
