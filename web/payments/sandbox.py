"""The sandbox provider: the whole payment flow with no account anywhere (development only).

It plays a provider that lives inside streamd: `create_checkout` points the buyer at a hosted
"pay / decline" page (``/sandbox/checkout``, `web.payments.sandbox_pages`) whose URL carries
the checkout's terms in an HMAC-signed token, so any streamd process can serve it. The
buyer's choice becomes a notification signed the way Stripe signs its webhooks
(``Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``) that goes through the very
same webhook code as a real provider's (verification, deduplication, the order's state
machine). Refunds succeed at once. `STREAMD_MODE=production` refuses this provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from web.payments.money import MINOR_UNITS
from web.payments.provider import (
    MAX_WEBHOOK_BYTES,
    WEBHOOK_TOLERANCE_S,
    Checkout,
    CheckoutRequest,
    EventKind,
    ProviderEvent,
    RefundRequest,
    RefundResult,
    RefundStatus,
    WebhookRejected,
    WebhookReply,
)

SIGNATURE_HEADER = "sandbox-signature"
CHECKOUT_PATH = "/sandbox/checkout"


def sign_body(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SandboxProvider:
    name = "sandbox"
    currencies = frozenset(MINOR_UNITS)

    def __init__(self, secret: bytes, base_url: str) -> None:
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    # --- the checkout token: the terms the hosted page shows and acts on ---

    def checkout_token(self, request: CheckoutRequest) -> str:
        terms = {
            "ref": request.reference, "amount": request.amount, "currency": request.currency,
            "desc": request.description, "return": request.return_url,
            "cancel": request.cancel_url, "exp": int(request.expires_at.timestamp()),
        }  # fmt: skip
        payload = base64.urlsafe_b64encode(json.dumps(terms).encode()).decode().rstrip("=")
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:20]
        return f"{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def read_token(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The terms of a checkout token; ValueError when forged or expired."""
        payload, _, mac = token.partition(".")
        wanted = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:20]
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)) if mac else b""
        if not hmac.compare_digest(given, wanted):
            raise ValueError("this checkout link is not valid")
        terms: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "==="))
        if terms["exp"] < (time.time() if now is None else now):
            raise ValueError("this checkout has expired")
        return terms

    def notification(
        self, terms: Mapping[str, Any], paid: bool, now: float
    ) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the signed notification for the buyer's choice."""
        body = json.dumps({
            "id": "sbx_evt_" + secrets.token_hex(12),
            "type": "payment.succeeded" if paid else "payment.declined",
            "reference": terms["ref"],
            "payment_id": "sbx_pay_" + secrets.token_hex(12) if paid else None,
            "amount": terms["amount"], "currency": terms["currency"],
            "message": None if paid else "declined on the sandbox page",
        }).encode()  # fmt: skip
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign_body(self._secret, body, int(now)),
        }
        return headers, body

    # --- Provider ---

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        query = urlencode({"token": self.checkout_token(request)})
        return Checkout(url=f"{self._base_url}{CHECKOUT_PATH}?{query}")

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[ProviderEvent]:
        if len(body) > MAX_WEBHOOK_BYTES:
            raise WebhookRejected("too_large", "notification body too large")
        header = headers.get(SIGNATURE_HEADER, "")
        fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        stamp, given = fields.get("t", ""), fields.get("v1", "")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or not given:
            raise WebhookRejected("bad_signature", f"no valid {SIGNATURE_HEADER} header")
        wanted = sign_body(self._secret, body, int(stamp)).rpartition("v1=")[2]
        if not hmac.compare_digest(given.encode(), wanted.encode()):
            raise WebhookRejected("bad_signature", "the signature does not match the body")
        if abs(now - int(stamp)) > WEBHOOK_TOLERANCE_S:
            raise WebhookRejected("stale", "the signature's timestamp is too old")
        try:
            data = json.loads(body)
            kind = {"payment.succeeded": EventKind.CAPTURED,
                    "payment.declined": EventKind.FAILED}[data["type"]]  # fmt: skip
            return [
                ProviderEvent(
                    event_id=str(data["id"]),
                    kind=kind,
                    reference=str(data["reference"]),
                    provider_ref=data["payment_id"],
                    amount=int(data["amount"]),
                    currency=str(data["currency"]),
                    message=data.get("message"),
                    raw=data,
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("malformed", f"not a sandbox notification: {exc}") from None

    def webhook_reply(self) -> WebhookReply:
        return WebhookReply()

    async def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(RefundStatus.SUCCEEDED, "sbx_re_" + secrets.token_hex(12))

    async def lookup(self, reference: str, provider_ref: str | None) -> ProviderEvent | None:
        return None  # the sandbox keeps no record: an unanswered checkout simply expires

    async def aclose(self) -> None:
        return None
