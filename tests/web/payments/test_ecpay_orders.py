"""Orders paid through ECPay, the whole way through streamd's API: the app in-process on a
real PostgreSQL, the ECPay adapter talking HTTP to a local fake of ECPay's All-in-One API
(tests/web/payments/ecpay_fake.py: ECPay's servers cannot be reached from here), and the
server notification (ReturnURL) signed with CheckMacValue exactly as ECPay signs it, posted to
/api/payments/webhooks/ecpay, which must answer ``1|OK``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.web.api_helpers import Api, MakeApi, User
from tests.web.payments.ecpay_fake import HASH_IV, HASH_KEY, MERCHANT_ID, EcpayFake
from tests.web.payments.test_orders_api import age_refunds
from web.payments import ecpay

WEBHOOK = "/api/payments/webhooks/ecpay"


@pytest.fixture
async def fake() -> AsyncIterator[EcpayFake]:
    server = EcpayFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api(make_api: MakeApi, fake: EcpayFake) -> Api:
    return await make_api(
        payments_providers=("ecpay",), ecpay_merchant_id=MERCHANT_ID, ecpay_hash_key=HASH_KEY,
        ecpay_hash_iv=HASH_IV, ecpay_api_base=fake.base_url, public_url="https://shop.example",
    )  # fmt: skip


async def paid_ecpay_order(api: Api, fake: EcpayFake, buyer: User, live_id: int) -> int:
    r = await api.client.post(
        "/api/orders", headers={**buyer.auth, "Idempotency-Key": f"paid-{live_id}"},
        json={"item": {"type": "live_ticket", "live_id": live_id}, "currency": "TWD",
              "provider": "ecpay"},
    )  # fmt: skip
    order, checkout = r.json()["order"], r.json()["checkout"]
    async with httpx.AsyncClient() as browser:
        assert (await browser.post(checkout["url"], data=checkout["form"])).status_code == 200
    trade = fake.trades[order["reference"]]
    await fake.pay(order["reference"])  # ECPay's own delivery cannot reach the in-process app
    paid = fake.notification(trade, code="1", message="交易成功", simulate=False)
    assert (await api.client.post(WEBHOOK, data=paid)).text == "1|OK"
    return int(order["id"])


async def test_an_ecpay_checkout_form_paid_and_notified(api: Api, fake: EcpayFake) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 15000, "currency": "TWD"})
    r = await api.client.post(
        "/api/orders", headers={**buyer.auth, "Idempotency-Key": "e-1"},
        json={"item": {"type": "live_ticket", "live_id": live["id"]}, "currency": "TWD",
              "provider": "ecpay"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    order, checkout = r.json()["order"], r.json()["checkout"]
    assert checkout["method"] == "POST" and checkout["url"] == fake.payment_url
    form = checkout["form"]
    assert form["MerchantTradeNo"] == order["reference"] and form["TotalAmount"] == "150"
    assert form["ReturnURL"] == "https://shop.example/api/payments/webhooks/ecpay"
    # The buyer's browser submits the form; the fake checks its CheckMacValue.
    async with httpx.AsyncClient() as browser:
        page = await browser.post(checkout["url"], data=form)
    assert page.status_code == 200, page.text
    trade = fake.trades[order["reference"]]

    # ECPay's notification, tampered with: refused, nothing recorded.
    paid = fake.notification(trade, code="1", message="交易成功", simulate=False)
    forged = {**paid, "TradeAmt": "1"}
    r = await api.client.post(WEBHOOK, data=forged)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_signature"
    # The genuine one: answered as ECPay documents, once or however often it is resent.
    for _ in range(3):
        r = await api.client.post(WEBHOOK, data=paid)
        assert (r.status_code, r.text) == (200, "1|OK")
    detail = (await api.client.get(f"/api/orders/{order['id']}", headers=buyer.auth)).json()
    assert detail["status"] == "paid" and detail["captured_amount"] == 15000
    assert await api.pool.fetchval("SELECT count(*) FROM ledger_entries") == 1
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_events") == 1
    r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
    assert r.status_code == 200


async def test_ecpay_takes_new_taiwan_dollars_only(api: Api) -> None:
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    r = await api.client.post(
        "/api/orders", headers={**buyer.auth, "Idempotency-Key": "e-2"},
        json={"item": {"type": "live_ticket", "live_id": live["id"]}, "currency": "USD",
              "provider": "ecpay"},
    )  # fmt: skip
    assert r.status_code == 422 and "ecpay does not charge in USD" in r.text


async def test_ecpay_refunds_retried_or_held_for_review(
    api: Api, fake: EcpayFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ECPay takes no idempotency key: a refund is sent again only when it surely did not
    arrive; one whose answer was lost stays reserved and flags the order for a person."""
    creator, buyer = await api.make_user("creator"), await api.make_user()
    admin = await api.make_user("admin")
    live = await api.create_live(creator, price={"amount": 15000, "currency": "TWD"})
    order_id = await paid_ecpay_order(api, fake, buyer, live["id"])
    url = f"/api/orders/{order_id}/refunds"

    # During ECPay's nightly close nothing is sent: pending, then sent by the reconciler.
    monkeypatch.setattr(ecpay, "in_nightly_close", lambda now: True)
    r = await api.client.post(url, json={"amount": 5000}, headers=admin.auth)
    assert r.status_code == 200 and r.json()["refunds"][0]["status"] == "pending"
    assert r.json()["refundable"] == 10000
    monkeypatch.setattr(ecpay, "in_nightly_close", lambda now: False)
    await age_refunds(api)
    assert await api.app.state.payments.reconcile_once() == 1
    detail = (await api.client.get(f"/api/orders/{order_id}", headers=admin.auth)).json()
    assert detail["refunds"][0]["status"] == "succeeded" and detail["refunded_amount"] == 5000
    assert await api.app.state.payments.reconcile_once() == 0  # nothing left to send

    # A partial refund whose answer is lost (a gateway timeout): not sent again, kept reserved.
    fake.fail_next(504)
    r = await api.client.post(url, json={"amount": 3000}, headers=admin.auth)
    assert r.status_code == 502 and "unknown" in r.json()["error"]["message"]
    detail = (await api.client.get(f"/api/orders/{order_id}", headers=admin.auth)).json()
    assert detail["refunds"][1]["status"] == "unknown"
    assert detail["refundable"] == 7000 and "back office" in detail["review_reason"]
    await age_refunds(api)
    actions = len(fake.requests)
    await api.app.state.payments.reconcile_once()
    assert len(fake.requests) == actions
    r = await api.client.post(url, json={"amount": 150}, headers=admin.auth)
    assert r.status_code == 422  # whole New Taiwan dollars: refused before anything is reserved
