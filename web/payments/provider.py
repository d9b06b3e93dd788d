"""What every payment provider adapter offers streamd (`sandbox`, `stripe`, `ecpay`).

The adapters know their provider's wire format and nothing about orders or the database:
`web.payments.orders_api` and `web.payments.webhooks` drive them and own every state change.

- `create_checkout`: the page the buyer is sent to (a redirect, or a form to POST for ECPay).
- `parse_webhook`: verifies the provider's signature over the raw body *before* parsing
  anything, refuses stale timestamps, and turns the notification into `ProviderEvent`s.
  It raises `WebhookRejected` for anything forged, stale, malformed or oversized.
- `refund`: asks the provider to refund part or all of a capture.
- `lookup`: asks the provider what became of a checkout (the reconciler calls it for orders
  whose webhook never came).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

#: Bodies above this are refused before the signature is checked (no provider sends more).
MAX_WEBHOOK_BYTES = 256 * 1024
#: Signed timestamps older (or further in the future) than this are refused.
WEBHOOK_TOLERANCE_S = 300


class EventKind(enum.StrEnum):
    CAPTURED = "captured"  # the money is ours: amount/currency are what was captured
    FAILED = "failed"  # the payment was declined or failed for good
    CANCELED = "canceled"  # the checkout expired or the buyer abandoned it
    REFUNDED = "refunded"  # one refund succeeded: amount is that refund's amount
    REFUND_FAILED = "refund_failed"  # a refund the provider had accepted failed after all


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    reference: str  # streamd's order reference: [A-Za-z0-9]{1,20} (ECPay's MerchantTradeNo)
    amount: int  # ISO 4217 minor units (web.payments.money)
    currency: str  # "USD", "TWD"
    description: str  # what the buyer sees at the provider ("Ticket: <live title>")
    buyer_email: str | None
    return_url: str  # the buyer's browser comes back here (paid, declined or canceled)
    cancel_url: str  # ... or here, when the buyer gives up at the provider's page
    notify_url: str  # server-to-server notifications (ECPay's ReturnURL; Stripe ignores it)
    expires_at: datetime  # the checkout must not accept payment after this (tz-aware)


@dataclass(frozen=True, slots=True)
class Checkout:
    url: str  # where the browser goes: GET it, or POST `form` to it
    provider_ref: str | None = None  # e.g. Stripe's Checkout Session id, when known now
    form: Mapping[str, str] | None = None  # ECPay: fields of an auto-submitted POST form


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    event_id: str  # unique per provider: the deduplication key
    kind: EventKind
    reference: str | None  # our order reference, when the event carries it
    provider_ref: str | None  # the provider's payment id (PaymentIntent, ECPay TradeNo, ...)
    amount: int  # minor units (captured amount; or this refund's amount)
    currency: str
    refund_ref: str | None = None  # REFUNDED: the provider's refund id
    refund_id: str | None = None  # REFUNDED: streamd's refund id, when the provider echoes it
    message: str | None = None  # a human reason (decline message), for the order timeline
    raw: Mapping[str, object] = field(default_factory=dict)  # kept on the webhook_events row


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """What the provider expects back once an event is accepted (ECPay: text ``1|OK``)."""

    status: int = 200
    body: bytes = b'{"received":true}'
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  # streamd's refund id: the provider's idempotency key where it takes one
    reference: str
    provider_ref: str | None
    amount: int  # minor units to refund now
    captured: int  # the order's captured amount (ECPay needs it)
    currency: str
    reason: str | None


class RefundStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # accepted; a webhook (or lookup) will confirm it
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: RefundStatus
    refund_ref: str | None
    message: str | None = None


class WebhookRejected(Exception):
    """Forged, stale, oversized or malformed: answered 400 and logged, nothing applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "bad_signature", "stale", "too_large", "malformed"


class ProviderError(Exception):
    """The provider refused or could not be reached; the message is safe to show.
    ``retryable``: sending the same request again is safe. ``unknown``: the request may have
    been carried out (an answer lost on the way back) and cannot safely be sent again."""

    def __init__(self, message: str, *, retryable: bool = False, unknown: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.unknown = unknown


class Provider(Protocol):
    name: str  # "sandbox", "stripe", "ecpay"
    currencies: frozenset[str]  # what it can charge in

    async def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[ProviderEvent]:
        """``headers`` lower-cased; ``now`` is time.time(). Raises WebhookRejected."""
        ...

    def webhook_reply(self) -> WebhookReply: ...

    async def refund(self, request: RefundRequest) -> RefundResult: ...

    async def lookup(self, reference: str, provider_ref: str | None) -> ProviderEvent | None:
        """The checkout's outcome if it has one (CAPTURED/FAILED/CANCELED), None while open."""
        ...

    async def aclose(self) -> None: ...
