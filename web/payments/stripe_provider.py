"""The Stripe adapter: Checkout Sessions, signed webhooks, refunds, lookups.

Built on the official SDK's `StripeClient` (never the global ``stripe.api_key``) and its async
methods over HTTPX, so no thread is blocked while Stripe answers. The SDK retries connection
errors, 409s and 5xx itself (``max_network_retries``, exponential backoff) and every POST carries
our own idempotency key, so a retried POST never creates a second session or refund.

Amounts: Stripe takes integers in the currency's minor unit (docs.stripe.com/currencies,
"Specify amounts in API requests"), which is what `web.payments.money` holds for USD and TWD:
neither is one of Stripe's zero-decimal currencies, so amounts go over unchanged. TWD is one of
Stripe's "special cases" only for *payouts* (amounts divisible by 100); charges and refunds may
have two decimals. streamd's whole-NT$ rule (`money.WHOLE_UNITS_ONLY`) is stricter, which is
harmless. Currencies where Stripe's exponent differs from ISO 4217 (ISK and UGX are sent with two
decimals ending in 00) would need a conversion here before they are added to `currencies`.

Webhook endpoints should be created with the API version the SDK pins (`_API_VERSION`): event
payloads are rendered in the endpoint's version, and the field names read here are those of
Checkout Session and Refund objects in it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
import stripe
from stripe.params import RefundCreateParams
from stripe.params.checkout import SessionCreateParams

from web.payments.money import MINOR_UNITS, AmountError, check_amount
from web.payments.provider import (
    MAX_WEBHOOK_BYTES,
    WEBHOOK_TOLERANCE_S,
    Checkout,
    CheckoutRequest,
    EventKind,
    ProviderError,
    ProviderEvent,
    RefundRequest,
    RefundResult,
    RefundStatus,
    WebhookRejected,
    WebhookReply,
)

#: Stripe's exponent for the currencies sold through it (two-decimal: not in Stripe's
#: zero-decimal list, and TWD's special case concerns payouts only).
STRIPE_EXPONENT: Final[Mapping[str, int]] = {"USD": 2, "TWD": 2}

#: A Checkout Session's ``expires_at`` must be 30 minutes to 24 hours after its creation; the
#: minute of margin on each side covers the clock difference between us and Stripe.
CHECKOUT_MIN_S: Final = 30 * 60 + 60
CHECKOUT_MAX_S: Final = 24 * 3600 - 60

_REFUND_STATUS: Final[Mapping[str, RefundStatus]] = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,  # the buyer's bank details are needed: not final
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


class _HTTPXClient(stripe.HTTPXClient):
    """`stripe.HTTPXClient` hands the encoded form body to httpx as ``data=``, which httpx
    deprecates (a DeprecationWarning per POST); ``content=`` sends the same bytes. Should the SDK
    rename the hook, this override is simply unused and only the warning comes back."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        if isinstance(kwargs.get("data"), str | bytes):
            kwargs["content"] = kwargs.pop("data")
        return [args, kwargs]


class StripeProvider:
    name = "stripe"
    currencies = frozenset(STRIPE_EXPONENT)

    def __init__(
        self,
        *,
        secret_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        timeout_s: float = 20.0,
        max_network_retries: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``api_base`` points the client elsewhere than api.stripe.com (tests: a local fake).
        ``http_client``, when given, stays the caller's to close. ``clock`` is read only to
        clamp a checkout's expiry into the window Stripe accepts."""
        if not secret_key or not webhook_secret:
            raise ValueError("Stripe needs a secret key and a webhook signing secret")
        for currency in self.currencies:
            if MINOR_UNITS.get(currency) != STRIPE_EXPONENT[currency]:
                raise ValueError(f"{currency}: streamd's minor units are not Stripe's")
        self._webhook_secret = webhook_secret
        self._clock = clock
        self._own_http = http_client is None
        self._http: stripe.HTTPClient = http_client or _HTTPXClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        )
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    # -- checkout -------------------------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        self._check_amount(request.amount, request.currency)
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount,
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "client_reference_id": request.reference,
            "metadata": {"reference": request.reference},
            # Copied onto the PaymentIntent, so its charge and refund events lead back here.
            "payment_intent_data": {"metadata": {"reference": request.reference}},
            "success_url": with_session_id(request.return_url),
            "cancel_url": request.cancel_url,
        }
        expires_at = checkout_expiry(request.expires_at.timestamp(), self._clock())
        if expires_at is not None:
            params["expires_at"] = expires_at
        if request.buyer_email:
            params["customer_email"] = request.buyer_email
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": f"checkout:{request.reference}"}
            )
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        if not session.url:
            raise ProviderError("Stripe returned a checkout session without a URL", retryable=True)
        return Checkout(url=session.url, provider_ref=session.id)

    def _check_amount(self, amount: int, currency: str) -> None:
        if currency not in self.currencies:
            raise ProviderError(f"Stripe is not set up to charge in {currency}")
        try:
            check_amount(amount, currency)
        except AmountError as exc:
            raise ProviderError(str(exc)) from exc

    # -- webhooks -------------------------------------------------------------------------------

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[ProviderEvent]:
        if len(body) > MAX_WEBHOOK_BYTES:
            raise WebhookRejected("too_large", f"webhook body over {MAX_WEBHOOK_BYTES} bytes")
        header = headers.get("stripe-signature")
        if not header:
            raise WebhookRejected("bad_signature", "no Stripe-Signature header")
        try:
            # tolerance=None: the SDK would check the age against its own clock (and only the
            # past); `now` is compared below, both ways, once the signature is known good.
            stripe.WebhookSignature.verify_header(body, header, self._webhook_secret, None)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise WebhookRejected("bad_signature", "Stripe-Signature does not match") from None
        if abs(now - signed_timestamp(header)) > WEBHOOK_TOLERANCE_S:
            raise WebhookRejected("stale", "Stripe-Signature timestamp outside the tolerance")
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookRejected("malformed", "webhook body is not JSON") from None
        return events_from(event)

    def webhook_reply(self) -> WebhookReply:
        return WebhookReply()

    # -- refunds --------------------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundResult:
        self._check_amount(request.amount, request.currency)
        if request.amount > request.captured:
            raise ProviderError("refund exceeds the captured amount")
        payment_intent = await self._payment_intent_of(request.provider_ref)
        metadata = {"reference": request.reference, "refund_id": request.refund_id}
        if request.reason:
            metadata["reason"] = request.reason[:500]  # Stripe's limit for a metadata value
        params: RefundCreateParams = {
            "payment_intent": payment_intent,
            "amount": request.amount,
            "metadata": metadata,
        }
        try:
            refund = await self._client.v1.refunds.create_async(
                params, {"idempotency_key": f"refund:{request.refund_id}"}
            )
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        # to_dict: optional fields (failure_reason) are absent, not None, on a StripeObject.
        fields = refund.to_dict()
        status = _REFUND_STATUS.get(str(fields.get("status")), RefundStatus.PENDING)
        reason = fields.get("failure_reason")
        message = (
            f"refund failed: {reason or 'unknown reason'}"
            if status is RefundStatus.FAILED
            else None
        )
        return RefundResult(status=status, refund_ref=refund.id, message=message)

    async def _payment_intent_of(self, provider_ref: str | None) -> str:
        """A PaymentIntent id: ``provider_ref`` itself, or the one of the Checkout Session it
        names (an order whose capture was learnt by lookup still holds the session id)."""
        if not provider_ref:
            raise ProviderError("the order has no Stripe payment to refund")
        if not provider_ref.startswith("cs_"):
            return provider_ref
        try:
            session = await self._client.v1.checkout.sessions.retrieve_async(provider_ref)
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        payment_intent = _id_of(session.to_dict().get("payment_intent"))
        if payment_intent is None:
            raise ProviderError("the Stripe checkout has no payment to refund")
        return payment_intent

    # -- reconciliation -------------------------------------------------------------------------

    async def lookup(self, reference: str, provider_ref: str | None) -> ProviderEvent | None:
        """By the Checkout Session id (what `create_checkout` returned), or by a PaymentIntent
        id through the session list's ``payment_intent`` filter. Stripe cannot list sessions by
        ``client_reference_id``, so without either there is nothing to ask."""
        if not provider_ref:
            raise ProviderError("the order has no Stripe checkout to look up")
        sessions = self._client.v1.checkout.sessions
        try:
            if provider_ref.startswith("cs_"):
                found = await sessions.retrieve_async(provider_ref, {"expand": ["payment_intent"]})
            else:
                page = await sessions.list_async(
                    {"payment_intent": provider_ref, "limit": 1, "expand": ["data.payment_intent"]}
                )
                if not page.data:
                    return None
                found = page.data[0]
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc
        return session_outcome(found.to_dict(), reference)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.close_async()  # type: ignore[no-untyped-call]


# -- helpers (pure: tested directly) --------------------------------------------------------------


def with_session_id(url: str) -> str:
    """``url`` with ``session_id={CHECKOUT_SESSION_ID}`` in its query: Stripe substitutes the
    literal placeholder, so it is appended as text (urlencode would escape the braces)."""
    base, hash_, fragment = url.partition("#")
    sep = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        sep = ""
    return f"{base}{sep}session_id={{CHECKOUT_SESSION_ID}}{hash_}{fragment}"


def checkout_expiry(expires_at: float, now: float) -> int | None:
    """The ``expires_at`` to send: the order's own when Stripe accepts it; 30 minutes from now
    when the order expires sooner (the order layer must then expect a late capture); None (send
    nothing: Stripe's default is 24 hours) when it expires later. Leaving it out rather than
    sending now+24h keeps the parameters of a retried create identical, which the idempotency
    key requires."""
    if expires_at - now > CHECKOUT_MAX_S:
        return None
    return int(max(expires_at, now + CHECKOUT_MIN_S))


def signed_timestamp(header: str) -> int:
    """The ``t=`` of a Stripe-Signature header the SDK has verified, read the way the SDK reads
    it (the first ``t`` item, split at most twice), so it is the timestamp that was signed."""
    items = [item.split("=", 2) for item in header.split(",")]
    try:
        return int(next(item[1] for item in items if item[0] == "t"))
    except (StopIteration, IndexError, ValueError):
        raise WebhookRejected("bad_signature", "Stripe-Signature has no timestamp") from None


def provider_error(exc: stripe.StripeError) -> ProviderError:
    """A message safe to show (no key, no raw body) and whether trying again may help."""
    status = exc.http_status or 0
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderError("Stripe could not be reached", retryable=True)
    if isinstance(exc, stripe.RateLimitError):
        return ProviderError("Stripe is rate limiting requests", retryable=True)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderError("Stripe refused the API key (check the secret key)")
    if isinstance(exc, stripe.IdempotencyError):
        return ProviderError("Stripe already has this request with other parameters")
    if status >= 500 or status == 409:
        return ProviderError(f"Stripe failed to answer (HTTP {status})", retryable=True)
    if isinstance(exc, stripe.CardError):
        return ProviderError(f"card declined: {exc.user_message or exc.code or 'declined'}")
    detail = exc.user_message or "invalid request"
    code = f" ({exc.code})" if exc.code else ""
    return ProviderError(f"Stripe refused the request{code}: {detail[:200]}")


def events_from(event: object) -> list[ProviderEvent]:
    """The ProviderEvents of one Stripe event; unknown types give none (acknowledged)."""
    if not isinstance(event, dict) or event.get("object") != "event":
        raise WebhookRejected("malformed", "not a Stripe event")
    event_id, kind = event.get("id"), event.get("type")
    data = event.get("data")
    if not isinstance(event_id, str) or not isinstance(kind, str) or not isinstance(data, dict):
        raise WebhookRejected("malformed", "a Stripe event needs id, type and data")
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise WebhookRejected("malformed", "a Stripe event needs data.object")
    if kind.startswith("checkout.session."):
        return _session_events(event_id, kind, obj, event)
    if kind in ("refund.created", "refund.updated"):
        return _refund_events(event_id, kind, obj, data.get("previous_attributes"), event)
    # charge.refunded is left out: refund.created/updated (sent for every refund since
    # 2024-10-28.acacia) carry the refund itself; charge.refunded only the charge's total.
    return []


def _session_events(
    event_id: str, kind: str, session: dict[str, Any], event: dict[str, Any]
) -> list[ProviderEvent]:
    if kind == "checkout.session.completed":
        if session.get("payment_status") != "paid":
            return []  # a delayed method (bank debit): async_payment_succeeded/failed follows
        outcome = EventKind.CAPTURED
    elif kind == "checkout.session.async_payment_succeeded":
        outcome = EventKind.CAPTURED
    elif kind == "checkout.session.async_payment_failed":
        outcome = EventKind.FAILED
    elif kind == "checkout.session.expired":
        outcome = EventKind.CANCELED
    else:
        return []
    message = "the delayed payment failed" if outcome is EventKind.FAILED else None
    return [_session_event(event_id, outcome, session, event, message=message)]


def _session_event(
    event_id: str,
    kind: EventKind,
    session: dict[str, Any],
    raw: Mapping[str, object],
    *,
    message: str | None = None,
    reference: str | None = None,
) -> ProviderEvent:
    amount, currency = session.get("amount_total"), session.get("currency")
    session_id = session.get("id")
    if not isinstance(amount, int) or not isinstance(currency, str):
        raise WebhookRejected("malformed", "a checkout session needs amount_total and currency")
    if not isinstance(session_id, str):
        raise WebhookRejected("malformed", "a checkout session needs an id")
    return ProviderEvent(
        event_id=event_id,
        kind=kind,
        reference=_reference(session) or reference,
        # The PaymentIntent is what refunds need; an expired session usually has none.
        provider_ref=_id_of(session.get("payment_intent")) or session_id,
        amount=amount,
        currency=currency.upper(),
        message=message,
        raw=raw,
    )


def _refund_events(
    event_id: str, kind: str, refund: dict[str, Any], previous: object, event: dict[str, Any]
) -> list[ProviderEvent]:
    """One REFUNDED per refund: at refund.created when it succeeded at once, else at the
    refund.updated whose ``previous_attributes`` show the status changing to succeeded. Later
    updates of a succeeded refund (metadata, destination details) are not counted again. A
    pending refund that ends failed or canceled (refund.updated) is one REFUND_FAILED."""
    status = refund.get("status")
    changed = isinstance(previous, dict) and "status" in previous
    if status == "succeeded":
        if kind == "refund.updated" and not changed:
            return []
        event_kind = EventKind.REFUNDED
    elif status in ("failed", "canceled") and kind == "refund.updated" and changed:
        event_kind = EventKind.REFUND_FAILED
    else:
        return []
    refund_id, amount, currency = refund.get("id"), refund.get("amount"), refund.get("currency")
    if not isinstance(refund_id, str) or not isinstance(amount, int):
        raise WebhookRejected("malformed", "a refund needs id and amount")
    if not isinstance(currency, str):
        raise WebhookRejected("malformed", "a refund needs a currency")
    payment_intent = refund.get("payment_intent")
    reference = _reference(refund)
    if reference is None and isinstance(payment_intent, dict):
        reference = _reference(payment_intent)  # only when the payload has it expanded
    return [
        ProviderEvent(
            event_id=event_id,
            kind=event_kind,
            reference=reference,
            provider_ref=_id_of(payment_intent),
            amount=amount,
            currency=currency.upper(),
            refund_ref=refund_id,
            message=f"refund {status}: {refund.get('failure_reason') or 'no reason given'}"
            if event_kind is EventKind.REFUND_FAILED
            else None,
            refund_id=_metadata(refund, "refund_id"),
            raw=event,
        )
    ]


def session_outcome(session: dict[str, Any], reference: str) -> ProviderEvent | None:
    """What a retrieved Checkout Session (payment_intent expanded) says of the order; event ids
    are stable per outcome, so the reconciler asking twice records it once."""
    session_id = session.get("id")
    status, paid = session.get("status"), session.get("payment_status")
    outcome: EventKind | None = None
    message: str | None = None
    if status == "expired":
        outcome = EventKind.CANCELED
    elif status == "complete" and paid == "paid":
        outcome = EventKind.CAPTURED
    elif status == "complete":
        # Completed but unpaid: a delayed method, failed once its PaymentIntent went back to
        # requires_payment_method (or was canceled), still processing otherwise.
        intent = session.get("payment_intent")
        if isinstance(intent, dict) and intent.get("status") in (
            "requires_payment_method",
            "canceled",
        ):
            outcome = EventKind.FAILED
            error = intent.get("last_payment_error")
            message = error.get("message") if isinstance(error, dict) else None
            message = message or "the delayed payment failed"
    if outcome is None:
        return None
    raw = {"session": session}
    return _session_event(
        f"lookup:{session_id}:{outcome.value}",
        outcome,
        session,
        raw,
        message=message,
        reference=reference,
    )


def _reference(obj: Mapping[str, Any]) -> str | None:
    ref = obj.get("client_reference_id")
    if isinstance(ref, str) and ref:
        return ref
    metadata = obj.get("metadata")
    ref = metadata.get("reference") if isinstance(metadata, dict) else None
    return ref if isinstance(ref, str) and ref else None


def _id_of(field: object) -> str | None:
    """An expandable field's id: the string itself, or the expanded object's ``id``."""
    if isinstance(field, str):
        return field
    if isinstance(field, Mapping):
        value = field.get("id")
        return value if isinstance(value, str) else None
    return None


def _metadata(obj: Mapping[str, Any], key: str) -> str | None:
    metadata = obj.get("metadata")
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None
