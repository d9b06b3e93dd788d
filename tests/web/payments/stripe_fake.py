"""A fake of the Stripe API on loopback, for the Stripe adapter's tests.

It is a FAKE, written from Stripe's public documentation (docs.stripe.com: the API reference of
Checkout Sessions, PaymentIntents and Refunds; "Errors", "Idempotent requests", "Expanding
responses", "Webhooks: check signatures", "Event object"), not from Stripe's code, and it answers
only what streamd's adapter asks. A Starlette app served by uvicorn on 127.0.0.1 in a thread.

What it covers:

- Requests as the official SDK sends them: form-encoded bodies and query strings in Stripe's
  bracket notation (``line_items[0][price_data][currency]=usd``, ``expand[0]=...``), parsed
  into nested dicts and lists; ``Authorization: Bearer <secret key>`` checked (401 otherwise).
- ``Idempotency-Key`` on POSTs: a successful response is saved per key and replayed for the same
  method, path and parameters (with ``Idempotent-Replayed: true``); the same key with other
  parameters is a 400 ``idempotency_error``. Errors are not saved (Stripe saves a result only
  once the endpoint started executing; the validation errors here never get that far).
- ``POST /v1/checkout/sessions`` (mode=payment, ``line_items[].price_data``: lower-case
  currency, integer ``unit_amount``, ``product_data.name``; ``expires_at`` 30 min..24 h after
  creation; the minimum of 0.50 USD and the 8-digit maximum; metadata limits),
  ``GET /v1/checkout/sessions/{id}`` and ``GET /v1/checkout/sessions?payment_intent=`` (with
  ``expand`` of ``payment_intent`` / ``data.payment_intent``), ``POST /v1/refunds`` (by
  ``payment_intent`` or ``charge``; refuses more than the unrefunded amount with
  ``amount_too_large``, a fully refunded charge with ``charge_already_refunded``) and
  ``GET /v1/refunds/{id}``. Unknown ids: 404 ``resource_missing``; unknown URLs: 404.
- Errors in Stripe's shape: ``{"error": {"type", "code", "message", "param", "doc_url"}}``, and a
  ``Request-Id`` header on every answer.
- Test hooks: `complete_session` (paid at once, or a delayed method left ``unpaid``),
  `settle_delayed` (the delayed payment succeeds or fails), `expire_session`, `settle_refund`
  (a pending refund succeeds or fails), `fail_next` (answers 5xx in front of the API, like a
  load balancer: not saved under the idempotency key), and events built the way Stripe builds
  them (``evt_`` ids, ``object: "event"``, ``type``, ``created``, ``data.object`` a snapshot of
  the real object, ``data.previous_attributes`` on updates), signed as Stripe signs them:
  ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>``.
  The hooks and the API record those events in `events`, in the order Stripe would send them.

What it does not cover: any other endpoint or parameter (a parameter it does not know is
ignored where Stripe would refuse it), payment methods and the hosted payment page itself,
customers, charges' own endpoints, pagination, search, API versions (objects have the fields of
the version the SDK pins, trimmed to what the adapter reads), test clocks, Connect, live mode,
rate limits, webhook delivery and retries (tests hand the signed events to the adapter), and
currencies' special cases beyond the lower-case code and the USD minimum.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers import free_port

API_VERSION = "2026-10-28.endive"  # what stripe-python 16 pins (stripe._api_version)
CHECKOUT_MIN_S = 30 * 60
CHECKOUT_MAX_S = 24 * 3600
MAX_AMOUNT = 99_999_999
MIN_AMOUNT = {"usd": 50}  # docs: "Minimum charge amount by currency" (0.50 USD)
CURRENCIES = frozenset({"usd", "twd", "eur", "gbp", "jpy", "huf", "isk", "ugx"})

Json = dict[str, Any]


class ApiError(Exception):
    """Answered as Stripe's JSON error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"message": message, "type": type_}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: Json
    idempotency_key: str | None
    headers: dict[str, str]


@dataclass
class _Saved:
    method: str
    path: str
    params: Json
    status: int
    body: Json


def parse_params(raw: str) -> Json:
    """Stripe's bracket notation (``a[b][0][c]=v``) into nested dicts; dicts whose keys are all
    indices become lists."""
    root: Json = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            raise ApiError(400, f"Invalid parameter name: {key}")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ApiError(400, f"Invalid hash: {key}", param=key)
            node = child
        node[parts[-1]] = value
    parsed: Json = _listify(root)
    return parsed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """What Stripe puts in ``Stripe-Signature``: the HMAC-SHA256 of ``"{t}.{payload}"``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def _int(params: Json, key: str, param: str | None = None) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise ApiError(400, f"Invalid integer: {value}", param=param or key)
    return int(value)


def _metadata(params: Json, param: str = "metadata") -> dict[str, str]:
    value = params.get("metadata", {})
    if not isinstance(value, dict) or len(value) > 50:
        raise ApiError(400, "Invalid metadata: at most 50 keys", param=param)
    for key, item in value.items():
        if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
            raise ApiError(400, "Invalid metadata: keys up to 40, values up to 500 characters",
                           param=f"{param}[{key}]")  # fmt: skip
    return dict(value)


@dataclass
class StripeFake:
    secret_key: str = "sk_test_fake_4242"
    webhook_secret: str = "whsec_fake_secret"
    clock: Callable[[], float] = time.time
    refund_status: str = "succeeded"  # the status new refunds get
    sessions: dict[str, Json] = field(default_factory=dict)
    payment_intents: dict[str, Json] = field(default_factory=dict)
    charges: dict[str, Json] = field(default_factory=dict)
    refunds: dict[str, Json] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    events: list[Json] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._saved: dict[str, _Saved] = {}
        self._faults: list[int] = []
        self._request_ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan="off", loop="asyncio")  # fmt: skip
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "fake did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    # -- test hooks -----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next ``count`` requests are answered ``status`` before reaching the API."""
        with self._lock:
            self._faults.extend([status] * count)

    def complete_session(self, session_id: str, *, delayed: bool = False) -> Json:
        """The buyer pays: a PaymentIntent and its charge (succeeded, or processing for a
        delayed method, which leaves the session ``unpaid``); ``checkout.session.completed``."""
        with self._lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", session["status"]
            intent_id, charge_id = _new_id("pi"), _new_id("ch")
            intent_data = session.pop("_payment_intent_data", {})
            self.payment_intents[intent_id] = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_received": 0 if delayed else session["amount_total"],
                "currency": session["currency"],
                "created": int(self.clock()),
                "latest_charge": charge_id,
                "last_payment_error": None,
                "livemode": False,
                "metadata": intent_data.get("metadata", {}),
                "status": "processing" if delayed else "succeeded",
            }
            self.charges[charge_id] = {
                "id": charge_id,
                "object": "charge",
                "amount": session["amount_total"],
                "amount_captured": session["amount_total"],
                "amount_refunded": 0,
                "captured": True,
                "currency": session["currency"],
                "livemode": False,
                "metadata": {},
                "paid": not delayed,
                "payment_intent": intent_id,
                "refunded": False,
                "status": "pending" if delayed else "succeeded",
            }
            session.update(
                status="complete",
                payment_status="unpaid" if delayed else "paid",
                payment_intent=intent_id,
                customer_details={"email": session.get("customer_email")},
            )
            return self._emit("checkout.session.completed", session)

    def settle_delayed(self, session_id: str, *, succeeded: bool) -> Json:
        with self._lock:
            session = self.sessions[session_id]
            intent = self.payment_intents[session["payment_intent"]]
            charge = self.charges[intent["latest_charge"]]
            if succeeded:
                intent.update(status="succeeded", amount_received=intent["amount"])
                charge.update(status="succeeded", paid=True)
                session["payment_status"] = "paid"
                return self._emit("checkout.session.async_payment_succeeded", session)
            error = {"type": "card_error", "code": "payment_intent_payment_attempt_failed",
                     "message": "The bank debit was returned."}  # fmt: skip
            intent.update(status="requires_payment_method", last_payment_error=error)
            charge.update(status="failed")
            return self._emit("checkout.session.async_payment_failed", session)

    def expire_session(self, session_id: str) -> Json:
        with self._lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", session["status"]
            session.update(status="expired", url=None)
            return self._emit("checkout.session.expired", session)

    def settle_refund(self, refund_id: str, status: str = "succeeded") -> Json:
        """A pending refund ends: ``refund.updated`` (and ``charge.refund.updated``) with the
        old status in ``previous_attributes``."""
        with self._lock:
            refund = self.refunds[refund_id]
            previous = {"status": refund["status"]}
            refund["status"] = status
            if status in ("failed", "canceled"):
                refund["failure_reason"] = "lost_or_stolen_card"
                charge = self.charges[refund["charge"]]
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = False
            self._emit("charge.refund.updated", refund, previous)
            return self._emit("refund.updated", refund, previous)

    def event(self, type_: str, obj: Json, previous: Json | None = None) -> Json:
        """An event as Stripe builds it (without recording it in `events`)."""
        data: Json = {"object": copy.deepcopy(_public(obj))}
        if previous is not None:
            data["previous_attributes"] = previous
        return {
            "id": _new_id("evt").replace("_test", ""),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self.clock()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }

    def webhook(
        self, event: Json, *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(lower-cased headers, raw body) of the POST Stripe would send for ``event``."""
        body = json.dumps(event, indent=2).encode()  # Stripe sends pretty-printed JSON
        t = int(self.clock()) if timestamp is None else timestamp
        return {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "stripe-signature": signature_header(body, secret or self.webhook_secret, t),
        }, body

    def events_of(self, type_: str) -> list[Json]:
        return [e for e in self.events if e["type"] == type_]

    def _emit(self, type_: str, obj: Json, previous: Json | None = None) -> Json:
        event = self.event(type_, obj, previous)
        self.events.append(event)
        return event

    # -- HTTP -----------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        body = (await request.body()).decode()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, payload, extra = self.handle(
            request.method, request.url.path, request.url.query, headers, body
        )
        extra["Request-Id"] = f"req_{next(self._request_ids):014d}"
        return Response(json.dumps(payload), status, extra, media_type="application/json")

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: str
    ) -> tuple[int, Json, dict[str, str]]:
        with self._lock:
            if self._faults:
                status = self._faults.pop(0)
                error = {"type": "api_error", "message": "Something went wrong on Stripe's end."}
                return status, {"error": error}, {}
            try:
                params = parse_params(body if method == "POST" else query)
                key = headers.get("idempotency-key") if method == "POST" else None
                self.requests.append(Recorded(method, path, params, key, headers))
                self._authenticate(headers)
                if key is not None and key in self._saved:
                    saved = self._saved[key]
                    if (saved.method, saved.path, saved.params) != (method, path, params):
                        raise ApiError(
                            400,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                            type_="idempotency_error",
                        )
                    return saved.status, saved.body, {"Idempotent-Replayed": "true"}
                status, result = self._route(method, path, params)
                if key is not None:
                    self._saved[key] = _Saved(method, path, params, status, result)
                return status, result, {}
            except ApiError as exc:
                return exc.status, {"error": exc.body}, {}

    def _authenticate(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise ApiError(401, "You did not provide an API key.")
        key = auth.removeprefix("Bearer ")
        if not hmac.compare_digest(key, self.secret_key):
            raise ApiError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")

    def _route(self, method: str, path: str, params: Json) -> tuple[int, Json]:
        expand = params.get("expand", [])
        if method == "POST" and path == "/v1/checkout/sessions":
            return 200, _public(self._create_session(params))
        if method == "GET" and path == "/v1/checkout/sessions":
            return 200, self._list_sessions(params, expand)
        if method == "GET" and (m := re.fullmatch(r"/v1/checkout/sessions/([^/]+)", path)):
            session = self._get(self.sessions, m.group(1), "checkout.session", "session")
            return 200, self._expanded(session, expand)
        if method == "POST" and path == "/v1/refunds":
            return 200, _public(self._create_refund(params))
        if method == "GET" and (m := re.fullmatch(r"/v1/refunds/([^/]+)", path)):
            return 200, _public(self._get(self.refunds, m.group(1), "refund", "refund"))
        raise ApiError(404, f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _get(table: dict[str, Json], id_: str, kind: str, param: str) -> Json:
        if id_ not in table:
            raise ApiError(404, f"No such {kind}: '{id_}'", code="resource_missing", param=param)
        return table[id_]

    def _expanded(self, session: Json, expand: list[str], prefix: str = "") -> Json:
        out = _public(session)
        intent = session.get("payment_intent")
        if f"{prefix}payment_intent" in expand and intent is not None:
            out["payment_intent"] = copy.deepcopy(self.payment_intents[intent])
        return out

    def _list_sessions(self, params: Json, expand: list[str]) -> Json:
        limit = _int(params, "limit") or 10
        found = [
            self._expanded(s, expand, "data.")
            for s in reversed(self.sessions.values())
            if params.get("payment_intent") in (None, s.get("payment_intent"))
        ]
        return {"object": "list", "data": found[:limit], "has_more": len(found) > limit,
                "url": "/v1/checkout/sessions"}  # fmt: skip

    def _create_session(self, params: Json) -> Json:
        if params.get("mode") != "payment":
            raise ApiError(400, "This fake only supports mode=payment.", param="mode")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "Missing required param: line_items.", param="line_items")
        total, currency = 0, None
        for n, item in enumerate(items):
            param = f"line_items[{n}]"
            price = item.get("price_data") if isinstance(item, dict) else None
            if not isinstance(price, dict):
                raise ApiError(400, "You must specify price_data.", param=f"{param}[price_data]")
            cur = price.get("currency", "")
            if cur not in CURRENCIES:
                raise ApiError(400, f"Invalid currency: {cur}.",
                               param=f"{param}[price_data][currency]")  # fmt: skip
            if currency not in (None, cur):
                raise ApiError(400, "All line items must use the same currency.", param=param)
            currency = cur
            unit = _int(price, "unit_amount", f"{param}[price_data][unit_amount]")
            quantity = _int(item, "quantity", f"{param}[quantity]")
            if unit is None or unit < 0 or quantity is None or quantity < 1:
                raise ApiError(400, "A line item needs unit_amount >= 0 and quantity >= 1.",
                               param=param)  # fmt: skip
            product = price.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                raise ApiError(400, "Missing required param: product_data[name].",
                               param=f"{param}[price_data][product_data][name]")  # fmt: skip
            total += unit * quantity
        assert currency is not None
        if total < MIN_AMOUNT.get(currency, 1):
            raise ApiError(400, "The Checkout Session's total amount due must add up to at "
                           f"least {MIN_AMOUNT.get(currency, 1)} {currency}.",
                           code="amount_too_small")  # fmt: skip
        if total > MAX_AMOUNT:
            raise ApiError(400, f"Amount must be no more than {MAX_AMOUNT}.",
                           code="amount_too_large")  # fmt: skip
        now = int(self.clock())
        expires_at = _int(params, "expires_at")
        if expires_at is None:
            expires_at = now + CHECKOUT_MAX_S
        elif expires_at < now + CHECKOUT_MIN_S:
            raise ApiError(400, "The `expires_at` timestamp must be at least 30 minutes from "
                           "Checkout Session creation.", param="expires_at")  # fmt: skip
        elif expires_at > now + CHECKOUT_MAX_S:
            raise ApiError(400, "The `expires_at` timestamp must be less than 24 hours from "
                           "Checkout Session creation.", param="expires_at")  # fmt: skip
        reference = params.get("client_reference_id")
        if reference is not None and len(reference) > 200:
            raise ApiError(400, "client_reference_id is over 200 characters",
                           param="client_reference_id")  # fmt: skip
        for url_param in ("success_url", "cancel_url"):
            url = params.get(url_param)
            if url is not None and not re.match(r"https?://", url):
                raise ApiError(400, f"Not a valid URL: {url_param}", param=url_param)
        intent_data = params.get("payment_intent_data", {})
        session_id = _new_id("cs")
        session: Json = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": reference,
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": expires_at,
            "livemode": False,
            "metadata": _metadata(params),
            "mode": "payment",
            "payment_intent": None,  # created when the buyer pays
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "url": f"{self.base_url}/c/pay/{session_id}",
            "_payment_intent_data": {"metadata": _metadata(intent_data,
                                                           "payment_intent_data[metadata]")},
        }  # fmt: skip
        self.sessions[session_id] = session
        return session

    def _create_refund(self, params: Json) -> Json:
        if "payment_intent" in params:
            intent = self._get(self.payment_intents, params["payment_intent"], "payment_intent",
                               "payment_intent")  # fmt: skip
            charge = self.charges[intent["latest_charge"]]
        elif "charge" in params:
            charge = self._get(self.charges, params["charge"], "charge", "charge")
        else:
            raise ApiError(400, "One of the following params should be provided for this "
                           "request: payment_intent or charge.")  # fmt: skip
        if charge["status"] != "succeeded":
            raise ApiError(400, "This PaymentIntent does not have a successful charge to refund.",
                           param="payment_intent")  # fmt: skip
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining <= 0:
            raise ApiError(400, f"Charge {charge['id']} has already been refunded.",
                           code="charge_already_refunded")  # fmt: skip
        amount = _int(params, "amount")
        amount = remaining if amount is None else amount
        if amount <= 0:
            raise ApiError(400, "Invalid positive integer", param="amount")
        if amount > remaining:
            raise ApiError(400, f"Refund amount ({amount} {charge['currency']}) is greater than "
                           f"unrefunded amount on charge ({remaining} {charge['currency']})",
                           code="amount_too_large", param="amount")  # fmt: skip
        reason = params.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise ApiError(400, f"Invalid reason: {reason}", param="reason")
        refund_id = _new_id("re").replace("_test", "")
        refund: Json = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": _new_id("txn").replace("_test", ""),
            "charge": charge["id"],
            "created": int(self.clock()),
            "currency": charge["currency"],
            "metadata": _metadata(params),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": self.refund_status,
            "transfer_reversal": None,
        }
        if refund["status"] in ("failed", "canceled"):
            refund["failure_reason"] = "expired_or_canceled_card"
            self.refunds[refund_id] = refund
            self._emit("refund.created", refund)
            return refund
        self.refunds[refund_id] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        self._emit("charge.refunded", charge)
        self._emit("refund.created", refund)
        return refund


def _public(obj: Json) -> Json:
    """The object as the API shows it (the fake's own ``_`` bookkeeping left out)."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}
