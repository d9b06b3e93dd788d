"""The Stripe adapter against a local fake of the Stripe API (tests/web/payments/stripe_fake.py):
the official SDK's real requests over HTTP, webhooks signed the way Stripe signs them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from tests.helpers import free_port
from tests.web.payments.stripe_fake import StripeFake, parse_params, signature_header
from web.payments.provider import (
    MAX_WEBHOOK_BYTES,
    WEBHOOK_TOLERANCE_S,
    CheckoutRequest,
    EventKind,
    ProviderError,
    ProviderEvent,
    RefundRequest,
    RefundStatus,
    WebhookRejected,
)
from web.payments.stripe_provider import (
    CHECKOUT_MAX_S,
    CHECKOUT_MIN_S,
    StripeProvider,
    checkout_expiry,
    with_session_id,
)


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    server = StripeFake()
    server.start()
    yield server
    server.stop()


def make_provider(fake: StripeFake, **options: Any) -> StripeProvider:
    settings: dict[str, Any] = {
        "secret_key": fake.secret_key,
        "webhook_secret": fake.webhook_secret,
        "api_base": fake.base_url,
        "max_network_retries": 0,  # the SDK's backoff sleeps; tests that want retries ask
        "timeout_s": 5.0,
    }
    return StripeProvider(**{**settings, **options})


@pytest.fixture
async def provider(fake: StripeFake) -> AsyncIterator[StripeProvider]:
    adapter = make_provider(fake)
    yield adapter
    await adapter.aclose()


def order(reference: str = "R1001", **changes: Any) -> CheckoutRequest:
    fields: dict[str, Any] = {
        "reference": reference,
        "amount": 1999,
        "currency": "USD",
        "description": "Ticket: Friday night live",
        "buyer_email": "buyer@example.com",
        "return_url": "https://streamd.example/orders/R1001?lang=en",
        "cancel_url": "https://streamd.example/orders/R1001/cancel",
        "notify_url": "https://streamd.example/api/payments/webhooks/stripe",
        "expires_at": datetime.now(UTC) + timedelta(hours=2),
    }
    return CheckoutRequest(**{**fields, **changes})


def refund_of(
    provider_ref: str | None, amount: int, refund_id: str = "RF1", **changes: Any
) -> RefundRequest:
    fields: dict[str, Any] = {
        "refund_id": refund_id,
        "reference": "R1001",
        "provider_ref": provider_ref,
        "amount": amount,
        "captured": 1999,
        "currency": "USD",
        "reason": "the stream was canceled",
    }
    return RefundRequest(**{**fields, **changes})


def deliver(
    provider: StripeProvider, fake: StripeFake, event: dict[str, Any]
) -> list[ProviderEvent]:
    headers, body = fake.webhook(event)
    return provider.parse_webhook(headers, body, time.time())


async def paid_session(
    provider: StripeProvider, fake: StripeFake, **changes: Any
) -> tuple[str, str]:
    """(session id, PaymentIntent id) of a checkout the buyer paid."""
    checkout = await provider.create_checkout(order(**changes))
    assert checkout.provider_ref is not None
    fake.complete_session(checkout.provider_ref)
    intent = fake.sessions[checkout.provider_ref]["payment_intent"]
    return checkout.provider_ref, intent


# -- the fake itself ------------------------------------------------------------------------------


def test_fake_parses_bracket_notation() -> None:
    raw = (
        "line_items[0][price_data][currency]=usd&line_items[0][quantity]=1"
        "&line_items[1][quantity]=2&metadata[reference]=R1&expand[0]=payment_intent&mode=payment"
    )
    assert parse_params(raw) == {
        "line_items": [{"price_data": {"currency": "usd"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"reference": "R1"},
        "expand": ["payment_intent"],
        "mode": "payment",
    }


def test_fake_signs_as_the_sdk_expects() -> None:
    payload = '{"id": "evt_1", "object": "event"}'
    expected = stripe.WebhookSignature.generate_signature_header(payload, "whsec_x", 1_700_000_000)
    assert signature_header(payload.encode(), "whsec_x", 1_700_000_000) == expected


# -- webhook signatures ---------------------------------------------------------------------------


async def test_signed_webhook_is_accepted(provider: StripeProvider, fake: StripeFake) -> None:
    _, intent = await paid_session(provider, fake)
    [event] = fake.events_of("checkout.session.completed")
    headers, body = fake.webhook(event)
    assert headers["stripe-signature"].startswith("t=")
    [captured] = provider.parse_webhook(headers, body, time.time())
    assert captured.kind is EventKind.CAPTURED
    assert captured.event_id == event["id"] and captured.event_id.startswith("evt_")
    assert captured.provider_ref == intent


async def test_forged_or_tampered_signature_is_refused(
    provider: StripeProvider, fake: StripeFake
) -> None:
    event = fake.event(
        "checkout.session.expired", {"id": "cs_1", "amount_total": 1, "currency": "usd"}
    )
    headers, body = fake.webhook(event, secret="whsec_someone_else")
    with pytest.raises(WebhookRejected) as forged:
        provider.parse_webhook(headers, body, time.time())
    assert forged.value.code == "bad_signature"

    headers, body = fake.webhook(event)
    tampered = body.replace(b'"amount_total": 1', b'"amount_total": 9')
    assert tampered != body
    with pytest.raises(WebhookRejected) as changed:
        provider.parse_webhook(headers, tampered, time.time())
    assert changed.value.code == "bad_signature"


@pytest.mark.parametrize("header", [None, "", "t=1700000000", "v1=abc", "garbage"])
def test_missing_or_unusable_signature_header_is_refused(header: str | None) -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    headers, body = fake.webhook(fake.event("customer.created", {"id": "cus_1"}))
    if header is None:
        del headers["stripe-signature"]
    else:
        headers["stripe-signature"] = header
    with pytest.raises(WebhookRejected) as rejected:
        provider.parse_webhook(headers, body, time.time())
    assert rejected.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [
        (0, True),
        (-(WEBHOOK_TOLERANCE_S - 5), True),
        (WEBHOOK_TOLERANCE_S - 5, True),
        (-(WEBHOOK_TOLERANCE_S + 1), False),  # stale
        (WEBHOOK_TOLERANCE_S + 1, False),  # from the future
    ],
)
def test_timestamp_is_checked_against_now(skew: int, accepted: bool) -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    now = 1_600_000_000  # years ago: only `now`, not the real clock, decides
    headers, body = fake.webhook(
        fake.event("customer.created", {"id": "cus_1"}), timestamp=now + skew
    )
    if accepted:
        assert provider.parse_webhook(headers, body, now) == []
    else:
        with pytest.raises(WebhookRejected) as rejected:
            provider.parse_webhook(headers, body, now)
        assert rejected.value.code == "stale"


def test_the_signed_timestamp_is_the_first_one() -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    now = 1_700_000_000
    headers, body = fake.webhook(fake.event("customer.created", {"id": "cus_1"}), timestamp=now)
    headers["stripe-signature"] += ",t=1"  # the SDK verifies against the first t: so do we
    assert provider.parse_webhook(headers, body, now) == []


def test_signature_is_checked_before_the_timestamp() -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    headers, body = fake.webhook(
        fake.event("customer.created", {"id": "cus_1"}), timestamp=1, secret="whsec_forger"
    )
    with pytest.raises(WebhookRejected) as rejected:
        provider.parse_webhook(headers, body, time.time())
    assert rejected.value.code == "bad_signature"


def test_oversized_body_is_refused_before_anything_else() -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    headers, body = fake.webhook(fake.event("customer.created", {"id": "cus_1"}))
    padded = body + b" " * (MAX_WEBHOOK_BYTES - len(body))  # JSON allows trailing blanks
    headers["stripe-signature"] = signature_header(padded, fake.webhook_secret, int(time.time()))
    assert provider.parse_webhook(headers, padded, time.time()) == []

    over = padded + b" "
    headers["stripe-signature"] = signature_header(over, fake.webhook_secret, int(time.time()))
    with pytest.raises(WebhookRejected) as rejected:
        provider.parse_webhook(headers, over, time.time())
    assert rejected.value.code == "too_large"
    del headers["stripe-signature"]  # too large wins even without a signature
    with pytest.raises(WebhookRejected) as unsigned:
        provider.parse_webhook(headers, over, time.time())
    assert unsigned.value.code == "too_large"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,  # nesting beyond the parser's recursion limit
        b"[]",
        b'{"object": "list", "data": []}',
        b'{"id": "evt_1", "object": "event", "type": "refund.created"}',
        b'{"id": "evt_1", "object": "event", "type": "refund.created", "data": {"object": 5}}',
        b'{"id": "evt_1", "object": "event", "type": "checkout.session.expired",'
        b' "data": {"object": {"id": "cs_1", "currency": "usd"}}}',
        b'{"id": "evt_1", "object": "event", "type": "refund.created",'
        b' "data": {"object": {"id": "re_1", "status": "succeeded", "amount": "5",'
        b' "currency": "usd"}}}',
    ],
)
def test_malformed_body_with_a_valid_signature(body: bytes) -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    headers = {"stripe-signature": signature_header(body, fake.webhook_secret, int(time.time()))}
    with pytest.raises(WebhookRejected) as rejected:
        provider.parse_webhook(headers, body, time.time())
    assert rejected.value.code == "malformed"


def test_body_that_is_not_utf8_cannot_be_verified() -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    body = b'{"id": "\xff"}'
    headers = {"stripe-signature": signature_header(body, fake.webhook_secret, int(time.time()))}
    with pytest.raises(WebhookRejected) as rejected:
        provider.parse_webhook(headers, body, time.time())
    assert rejected.value.code == "bad_signature"


# -- event mapping --------------------------------------------------------------------------------


async def test_completed_and_paid_is_captured(provider: StripeProvider, fake: StripeFake) -> None:
    _, intent = await paid_session(provider, fake, reference="R77", amount=1500)
    [event] = fake.events_of("checkout.session.completed")
    [captured] = deliver(provider, fake, event)
    assert captured == ProviderEvent(
        event_id=event["id"],
        kind=EventKind.CAPTURED,
        reference="R77",
        provider_ref=intent,
        amount=1500,
        currency="USD",
        raw=event,
    )


async def test_delayed_payment_is_captured_when_it_succeeds(
    provider: StripeProvider, fake: StripeFake
) -> None:
    checkout = await provider.create_checkout(order(currency="TWD", amount=15000))
    assert checkout.provider_ref
    completed = fake.complete_session(checkout.provider_ref, delayed=True)
    assert completed["data"]["object"]["payment_status"] == "unpaid"
    assert deliver(provider, fake, completed) == []  # not paid yet
    succeeded = fake.settle_delayed(checkout.provider_ref, succeeded=True)
    [captured] = deliver(provider, fake, succeeded)
    assert (captured.kind, captured.amount, captured.currency) == (EventKind.CAPTURED, 15000, "TWD")
    assert captured.event_id == succeeded["id"] and captured.reference == "R1001"


async def test_delayed_payment_failure_is_failed(
    provider: StripeProvider, fake: StripeFake
) -> None:
    checkout = await provider.create_checkout(order())
    assert checkout.provider_ref
    fake.complete_session(checkout.provider_ref, delayed=True)
    failed = fake.settle_delayed(checkout.provider_ref, succeeded=False)
    [event] = deliver(provider, fake, failed)
    assert event.kind is EventKind.FAILED and event.reference == "R1001"
    assert event.provider_ref == fake.sessions[checkout.provider_ref]["payment_intent"]


async def test_expired_checkout_is_canceled(provider: StripeProvider, fake: StripeFake) -> None:
    checkout = await provider.create_checkout(order(reference="R5"))
    assert checkout.provider_ref
    [event] = deliver(provider, fake, fake.expire_session(checkout.provider_ref))
    assert (event.kind, event.reference, event.amount) == (EventKind.CANCELED, "R5", 1999)
    assert event.provider_ref == checkout.provider_ref  # no PaymentIntent: the session's id


async def test_one_refund_is_counted_once_across_its_events(
    provider: StripeProvider, fake: StripeFake
) -> None:
    _, intent = await paid_session(provider, fake)
    result = await provider.refund(refund_of(intent, 500))
    types = [e["type"] for e in fake.events]
    assert "charge.refunded" in types and "refund.created" in types
    refunded = [pe for e in fake.events for pe in deliver(provider, fake, e)
                if pe.kind is EventKind.REFUNDED]  # fmt: skip
    [event] = refunded
    assert event.refund_ref == result.refund_ref
    assert (event.amount, event.currency, event.reference) == (500, "USD", "R1001")
    assert event.provider_ref == intent
    assert event.event_id == fake.events_of("refund.created")[0]["id"]


async def test_pending_refund_is_counted_when_it_succeeds(
    provider: StripeProvider, fake: StripeFake
) -> None:
    _, intent = await paid_session(provider, fake)
    fake.refund_status = "pending"
    result = await provider.refund(refund_of(intent, 700))
    assert result.status is RefundStatus.PENDING and result.refund_ref
    [created] = fake.events_of("refund.created")
    assert deliver(provider, fake, created) == []
    updated = fake.settle_refund(result.refund_ref)
    [event] = deliver(provider, fake, updated)
    assert (event.kind, event.refund_ref, event.amount) == (
        EventKind.REFUNDED,
        result.refund_ref,
        700,
    )
    [charge_update] = fake.events_of("charge.refund.updated")
    assert deliver(provider, fake, charge_update) == []
    # A later update of the succeeded refund (metadata here) is not a second refund.
    later = fake.event("refund.updated", fake.refunds[result.refund_ref], {"metadata": {}})
    assert deliver(provider, fake, later) == []


async def test_failed_refund_update_is_one_refund_failed(
    provider: StripeProvider, fake: StripeFake
) -> None:
    _, intent = await paid_session(provider, fake)
    fake.refund_status = "pending"
    result = await provider.refund(refund_of(intent, 700))
    assert result.refund_ref
    [failed] = deliver(provider, fake, fake.settle_refund(result.refund_ref, "failed"))
    assert failed.kind is EventKind.REFUND_FAILED and failed.refund_ref == result.refund_ref
    assert failed.refund_id == "RF1" and failed.message and "lost_or_stolen_card" in failed.message
    # charge.refund.updated says the same of the same refund: not counted.
    assert deliver(provider, fake, fake.events_of("charge.refund.updated")[-1]) == []


def test_refund_reference_from_an_expanded_payment_intent() -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    intent = {"id": "pi_1", "object": "payment_intent", "metadata": {"reference": "R9"}}
    refund = {"id": "re_1", "object": "refund", "amount": 300, "currency": "twd",
              "status": "succeeded", "metadata": {}, "payment_intent": intent}  # fmt: skip
    [event] = deliver(provider, fake, fake.event("refund.created", refund))
    assert (event.reference, event.provider_ref, event.currency) == ("R9", "pi_1", "TWD")
    refund["payment_intent"] = "pi_1"  # as Stripe sends it: not expanded, no reference
    [bare] = deliver(provider, fake, fake.event("refund.created", refund))
    assert (bare.reference, bare.provider_ref) == (None, "pi_1")


@pytest.mark.parametrize(
    "kind", ["customer.created", "payment_intent.succeeded", "checkout.session.async_payment_x"]
)
def test_unknown_event_types_are_acknowledged_and_ignored(kind: str) -> None:
    fake = StripeFake()
    provider = make_provider(fake)
    obj = {"id": "x_1", "amount_total": 100, "currency": "usd", "payment_status": "paid"}
    assert deliver(provider, fake, fake.event(kind, obj)) == []


# -- checkout -------------------------------------------------------------------------------------


async def test_checkout_sends_what_stripe_expects(
    provider: StripeProvider, fake: StripeFake
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=3)
    checkout = await provider.create_checkout(order(reference="R42", expires_at=expires))
    assert checkout.provider_ref and checkout.provider_ref.startswith("cs_")
    assert checkout.url == f"{fake.base_url}/c/pay/{checkout.provider_ref}"
    assert checkout.form is None
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
    assert sent.idempotency_key == "checkout:R42"
    assert sent.headers["authorization"] == f"Bearer {fake.secret_key}"
    assert sent.params == {
        "mode": "payment",
        "line_items": [
            {
                "quantity": "1",
                "price_data": {
                    "currency": "usd",
                    "unit_amount": "1999",
                    "product_data": {"name": "Ticket: Friday night live"},
                },
            }
        ],
        "client_reference_id": "R42",
        "metadata": {"reference": "R42"},
        "payment_intent_data": {"metadata": {"reference": "R42"}},
        "success_url": "https://streamd.example/orders/R1001?lang=en&session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://streamd.example/orders/R1001/cancel",
        "expires_at": str(int(expires.timestamp())),
        "customer_email": "buyer@example.com",
    }


async def test_twd_is_sent_in_minor_units(provider: StripeProvider, fake: StripeFake) -> None:
    checkout = await provider.create_checkout(order(currency="TWD", amount=15000, buyer_email=None))
    assert checkout.provider_ref
    price = fake.requests[-1].params["line_items"][0]["price_data"]
    assert (price["currency"], price["unit_amount"]) == ("twd", "15000")  # NT$150.00
    assert "customer_email" not in fake.requests[-1].params
    session = fake.sessions[checkout.provider_ref]
    assert (session["amount_total"], session["currency"]) == (15000, "twd")


async def test_same_reference_twice_is_the_same_session(
    provider: StripeProvider, fake: StripeFake
) -> None:
    request = order(reference="R7")
    first = await provider.create_checkout(request)
    second = await provider.create_checkout(request)
    assert first == second
    assert len(fake.sessions) == 1 and len(fake.requests) == 2
    assert {r.idempotency_key for r in fake.requests} == {"checkout:R7"}


async def test_same_reference_with_other_parameters_is_refused(
    provider: StripeProvider, fake: StripeFake
) -> None:
    await provider.create_checkout(order(reference="R8"))
    with pytest.raises(ProviderError) as refused:
        await provider.create_checkout(order(reference="R8", amount=2999))
    assert not refused.value.retryable
    assert len(fake.sessions) == 1


@pytest.mark.parametrize(
    ("in_s", "sent"),
    [(600, "min"), (2 * 3600, "own"), (3 * 24 * 3600, None)],
)
async def test_checkout_expiry_is_kept_in_stripes_window(
    provider: StripeProvider, fake: StripeFake, in_s: int, sent: str | None
) -> None:
    now = time.time()
    expires = datetime.fromtimestamp(now + in_s, UTC)
    checkout = await provider.create_checkout(order(expires_at=expires))
    params = fake.requests[-1].params
    if sent is None:
        assert "expires_at" not in params  # Stripe's default: 24 hours
    elif sent == "own":
        assert params["expires_at"] == str(int(expires.timestamp()))
    else:
        assert now + 30 * 60 < int(params["expires_at"]) <= time.time() + CHECKOUT_MIN_S
    assert checkout.provider_ref in fake.sessions  # the fake applies Stripe's 30 min..24 h rule


def test_checkout_expiry_bounds() -> None:
    now = 1_700_000_000.0
    assert checkout_expiry(now + 60, now) == now + CHECKOUT_MIN_S
    assert checkout_expiry(now - 60, now) == now + CHECKOUT_MIN_S
    assert checkout_expiry(now + 7200.7, now) == int(now + 7200)
    assert checkout_expiry(now + CHECKOUT_MAX_S, now) == now + CHECKOUT_MAX_S
    assert checkout_expiry(now + CHECKOUT_MAX_S + 1, now) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/o/1", "https://a.example/o/1?session_id={CHECKOUT_SESSION_ID}"),
        ("https://a.example/o?x=1", "https://a.example/o?x=1&session_id={CHECKOUT_SESSION_ID}"),
        ("https://a.example/o?", "https://a.example/o?session_id={CHECKOUT_SESSION_ID}"),
        ("https://a.example/#/o/1", "https://a.example/?session_id={CHECKOUT_SESSION_ID}#/o/1"),
        (
            "https://a.example/o?x=1#top",
            "https://a.example/o?x=1&session_id={CHECKOUT_SESSION_ID}#top",
        ),
    ],
)
def test_return_url_gets_the_session_id_placeholder(url: str, expected: str) -> None:
    assert with_session_id(url) == expected


@pytest.mark.parametrize(
    "changes", [{"currency": "EUR"}, {"currency": "TWD", "amount": 15050}, {"amount": 0}]
)
async def test_amounts_stripe_must_not_see_are_refused_here(
    provider: StripeProvider, fake: StripeFake, changes: dict[str, Any]
) -> None:
    with pytest.raises(ProviderError) as refused:
        await provider.create_checkout(order(**changes))
    assert not refused.value.retryable
    assert fake.requests == []


async def test_below_stripes_minimum_is_refused_by_stripe(
    provider: StripeProvider, fake: StripeFake
) -> None:
    with pytest.raises(ProviderError) as refused:
        await provider.create_checkout(order(amount=49))  # Stripe's minimum: 0.50 USD
    assert not refused.value.retryable and "amount_too_small" in str(refused.value)
    assert fake.sessions == {}


async def test_wrong_secret_key_is_not_retryable_and_not_shown(fake: StripeFake) -> None:
    adapter = make_provider(fake, secret_key="sk_test_wrong_key_1234")
    try:
        with pytest.raises(ProviderError) as refused:
            await adapter.create_checkout(order())
    finally:
        await adapter.aclose()
    assert not refused.value.retryable
    assert "1234" not in str(refused.value) and "sk_test" not in str(refused.value)


# -- lookup ---------------------------------------------------------------------------------------


async def test_lookup_open_paid_and_stable(provider: StripeProvider, fake: StripeFake) -> None:
    checkout = await provider.create_checkout(order(reference="R3"))
    assert checkout.provider_ref
    assert await provider.lookup("R3", checkout.provider_ref) is None
    fake.complete_session(checkout.provider_ref)
    found = await provider.lookup("R3", checkout.provider_ref)
    assert found is not None and found.kind is EventKind.CAPTURED
    assert found.event_id == f"lookup:{checkout.provider_ref}:captured"
    intent = fake.sessions[checkout.provider_ref]["payment_intent"]
    assert (found.reference, found.provider_ref, found.amount, found.currency) == (
        "R3", intent, 1999, "USD",
    )  # fmt: skip
    assert await provider.lookup("R3", checkout.provider_ref) == found
    # The PaymentIntent id finds the same session (the list's payment_intent filter).
    assert await provider.lookup("R3", intent) == found


async def test_lookup_expired_is_canceled(provider: StripeProvider, fake: StripeFake) -> None:
    checkout = await provider.create_checkout(order(reference="R4"))
    assert checkout.provider_ref
    fake.expire_session(checkout.provider_ref)
    found = await provider.lookup("R4", checkout.provider_ref)
    assert found is not None and found.kind is EventKind.CANCELED
    assert found.event_id == f"lookup:{checkout.provider_ref}:canceled"


async def test_lookup_delayed_payment(provider: StripeProvider, fake: StripeFake) -> None:
    checkout = await provider.create_checkout(order(reference="R6"))
    assert checkout.provider_ref
    fake.complete_session(checkout.provider_ref, delayed=True)
    assert await provider.lookup("R6", checkout.provider_ref) is None  # still processing
    fake.settle_delayed(checkout.provider_ref, succeeded=False)
    found = await provider.lookup("R6", checkout.provider_ref)
    assert found is not None and found.kind is EventKind.FAILED
    assert found.message == "The bank debit was returned."


async def test_lookup_without_or_with_an_unknown_id(provider: StripeProvider) -> None:
    with pytest.raises(ProviderError):
        await provider.lookup("R1", None)
    with pytest.raises(ProviderError) as missing:
        await provider.lookup("R1", "cs_test_nothing")
    assert not missing.value.retryable
    assert await provider.lookup("R1", "pi_test_nothing") is None  # no session has it


# -- refunds --------------------------------------------------------------------------------------


async def test_partial_then_full_refund(provider: StripeProvider, fake: StripeFake) -> None:
    _, intent = await paid_session(provider, fake)
    first = await provider.refund(refund_of(intent, 500, "RF1"))
    assert first.status is RefundStatus.SUCCEEDED and first.refund_ref in fake.refunds
    sent = fake.requests[-1]
    assert (sent.path, sent.idempotency_key) == ("/v1/refunds", "refund:RF1")
    assert sent.params == {
        "payment_intent": intent,
        "amount": "500",
        "metadata": {"reference": "R1001", "refund_id": "RF1", "reason": "the stream was canceled"},
    }
    second = await provider.refund(refund_of(intent, 1499, "RF2"))
    assert second.status is RefundStatus.SUCCEEDED and second.refund_ref != first.refund_ref
    charge = fake.charges[fake.payment_intents[intent]["latest_charge"]]
    assert (charge["amount_refunded"], charge["refunded"]) == (1999, True)


@pytest.mark.parametrize(
    ("stripe_status", "status"),
    [
        ("succeeded", RefundStatus.SUCCEEDED),
        ("pending", RefundStatus.PENDING),
        ("requires_action", RefundStatus.PENDING),
        ("failed", RefundStatus.FAILED),
        ("canceled", RefundStatus.FAILED),
    ],
)
async def test_refund_status_is_mapped(
    provider: StripeProvider, fake: StripeFake, stripe_status: str, status: RefundStatus
) -> None:
    _, intent = await paid_session(provider, fake)
    fake.refund_status = stripe_status
    result = await provider.refund(refund_of(intent, 500))
    assert result.status is status and result.refund_ref in fake.refunds
    if status is RefundStatus.FAILED:
        assert result.message == "refund failed: expired_or_canceled_card"
    else:
        assert result.message is None


async def test_refund_retried_with_the_same_id_is_one_refund(
    provider: StripeProvider, fake: StripeFake
) -> None:
    _, intent = await paid_session(provider, fake)
    first = await provider.refund(refund_of(intent, 500, "RF9"))
    again = await provider.refund(refund_of(intent, 500, "RF9"))
    assert first == again and len(fake.refunds) == 1


async def test_refund_by_session_id(provider: StripeProvider, fake: StripeFake) -> None:
    session_id, intent = await paid_session(provider, fake)
    result = await provider.refund(refund_of(session_id, 100))
    assert result.refund_ref and fake.refunds[result.refund_ref]["payment_intent"] == intent


async def test_over_refund_is_refused_for_good(provider: StripeProvider, fake: StripeFake) -> None:
    _, intent = await paid_session(provider, fake)
    await provider.refund(refund_of(intent, 1500, "RF1"))
    with pytest.raises(ProviderError) as too_much:
        await provider.refund(refund_of(intent, 1000, "RF2"))
    assert not too_much.value.retryable and "amount_too_large" in str(too_much.value)
    await provider.refund(refund_of(intent, 499, "RF3"))
    with pytest.raises(ProviderError) as done:
        await provider.refund(refund_of(intent, 1, "RF4"))
    assert not done.value.retryable and "charge_already_refunded" in str(done.value)
    asked = len(fake.requests)
    with pytest.raises(ProviderError) as over_capture:
        await provider.refund(refund_of(intent, 2000, "RF5"))
    assert not over_capture.value.retryable
    assert len(fake.requests) == asked  # over the captured amount: refused before asking Stripe


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_stripe_failing_is_retryable(
    provider: StripeProvider, fake: StripeFake, status: int
) -> None:
    _, intent = await paid_session(provider, fake)
    fake.fail_next(status=status)
    with pytest.raises(ProviderError) as failed:
        await provider.refund(refund_of(intent, 500))
    assert failed.value.retryable
    assert fake.refunds == {}


async def test_sdk_retries_with_the_same_idempotency_key(fake: StripeFake) -> None:
    adapter = make_provider(fake, max_network_retries=1)
    try:
        _, intent = await paid_session(adapter, fake)
        fake.fail_next(status=500)
        result = await adapter.refund(refund_of(intent, 500, "RF3"))
    finally:
        await adapter.aclose()
    assert result.status is RefundStatus.SUCCEEDED and len(fake.refunds) == 1
    assert fake.requests[-1].idempotency_key == "refund:RF3"


async def test_stripe_unreachable_is_retryable() -> None:
    fake = StripeFake()  # never started: nothing listens on its port
    fake.base_url = f"http://127.0.0.1:{free_port()}"
    adapter = make_provider(fake)
    try:
        with pytest.raises(ProviderError) as failed:
            await adapter.create_checkout(order())
        assert failed.value.retryable
        with pytest.raises(ProviderError) as refund_failed:
            await adapter.refund(refund_of("pi_1", 100))
        assert refund_failed.value.retryable
    finally:
        await adapter.aclose()


def test_webhook_reply_is_stripes_ack() -> None:
    reply = make_provider(StripeFake()).webhook_reply()
    assert reply.status == 200 and json.loads(reply.body) == {"received": True}
