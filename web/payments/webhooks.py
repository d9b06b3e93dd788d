"""Provider notifications (``POST /api/payments/webhooks/{provider}``) and the sandbox's hosted
checkout page (``/sandbox/checkout``).

A webhook's raw body is read up to `MAX_WEBHOOK_BYTES` and handed, unparsed, to its provider's
`parse_webhook`, which checks the signature before reading anything; only then are its events
applied (`web.payments.service.Payments.apply`). Answers:

- 200 with what the provider expects (ECPay: ``1|OK``) once every event is recorded, including
  an event seen before (a duplicate is acknowledged, so the provider stops resending it) and one
  naming no order here (recorded as ``unknown_order`` and logged: another application's, on a
  shared provider account; an order still being created is waited for, never missed);
- 400 ``{"error": {"code": "bad_signature" | "stale" | "malformed"}}`` for a forged, stale or
  malformed notification, 413 for one too large: nothing is applied, a warning is logged;
- 503 when the database is down: the provider retries later (Stripe for 3 days, ECPay for a
  day).

The sandbox page plays the provider's side: the buyer's "pay" or "decline" becomes a
notification signed with the sandbox's key and goes through the very same `Payments.deliver`.
"""

from __future__ import annotations

import html
import logging
import time
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from db.errors import DB_ERRORS
from web.api import Call, Endpoint, read_capped
from web.errors import ApiError
from web.payments.money import display
from web.payments.provider import MAX_WEBHOOK_BYTES, WebhookRejected
from web.payments.sandbox import CHECKOUT_PATH, SandboxProvider
from web.payments.service import Payments

log = logging.getLogger(__name__)

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
MAX_FORM_BYTES = 8 * 1024


async def webhook(call: Call) -> Response:
    name = call.path_str("provider")
    payments: Payments = call.request.app.state.payments
    provider = payments.providers.get(name)
    client = call.client_ip
    if provider is None:
        log.warning("payments: webhook for %r from %s refused: no such provider here", name, client)
        raise ApiError(404, "not_found", f"no payment provider {name!r} is enabled here")
    body = await read_capped(call.request, MAX_WEBHOOK_BYTES)
    if body is None:
        log.warning("payments: %s webhook from %s refused: over %d bytes", name, client,
                    MAX_WEBHOOK_BYTES)  # fmt: skip
        raise ApiError(413, "too_large", f"notifications are at most {MAX_WEBHOOK_BYTES} bytes")
    headers = {k.lower(): v for k, v in call.request.headers.items()}
    try:
        reply = await payments.deliver(provider, headers, body)
    except WebhookRejected as exc:
        log.warning("payments: %s webhook from %s rejected (%s): %s", name, client, exc.code, exc)
        raise ApiError(400, exc.code, str(exc)) from None
    except DB_ERRORS as exc:
        log.error("payments: %s webhook not recorded (database): %s", name, exc)
        raise ApiError(503, "unavailable", "could not record the notification; retry later",
                       headers={"Retry-After": "30"}) from None  # fmt: skip
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


# --- the sandbox's hosted checkout page ---


def _sandbox(request: Request) -> SandboxProvider | None:
    payments: Payments = request.app.state.payments
    provider = payments.providers.get("sandbox")
    return provider if isinstance(provider, SandboxProvider) else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{html.escape(title)} · streamd sandbox payments</title>
<style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;
color:#222}}.box{{border:1px solid #ddd;border-radius:8px;padding:1.5rem}}
.amount{{font-size:2rem;font-weight:600;margin:.5rem 0}}.note{{color:#666;font-size:.9rem}}
button{{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem .3rem 0 0;border-radius:6px;
border:1px solid #888;cursor:pointer}}
button.pay{{background:#1a7f37;color:#fff;border-color:#1a7f37}}
</style></head><body><main class="box"><h1>{html.escape(title)}</h1>{body}</main></body></html>"""
    headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store",
               "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}  # fmt: skip
    return HTMLResponse(page, status_code=status, headers=headers)


async def sandbox_checkout(request: Request) -> Response:
    if request.method == "POST":
        return await sandbox_choice(request)
    return await sandbox_page(request)


async def sandbox_page(request: Request) -> Response:
    provider = _sandbox(request)
    if provider is None:
        return _page("Not available", "<p>The sandbox payment provider is not enabled.</p>", 404)
    token = request.query_params.get("token", "")
    try:
        terms = provider.read_token(token)
    except (ValueError, KeyError, TypeError) as exc:
        return _page("Checkout unavailable", f"<p>{html.escape(str(exc))}</p>", 400)
    amount = display(int(terms["amount"]), str(terms["currency"]))
    body = f"""<p>{html.escape(str(terms["desc"]))}</p>
<p class="amount" data-test="sandbox-amount">{html.escape(amount)}</p>
<p class="note">Sandbox: no card, no money. Choose what the payment provider should report.</p>
<form method="post" action="{CHECKOUT_PATH}">
<input type="hidden" name="token" value="{html.escape(token)}">
<button class="pay" name="choice" value="pay" data-test="sandbox-pay">
Pay {html.escape(amount)}</button>
<button name="choice" value="decline" data-test="sandbox-decline">Decline</button>
<button name="choice" value="cancel" data-test="sandbox-cancel">Cancel</button>
</form>"""
    return _page("Sandbox checkout", body)


async def sandbox_choice(request: Request) -> Response:
    provider = _sandbox(request)
    if provider is None:
        return _page("Not available", "<p>The sandbox payment provider is not enabled.</p>", 404)
    raw = await read_capped(request, MAX_FORM_BYTES)
    form = parse_qs((raw or b"").decode("utf-8", "replace"))
    token, choice = form.get("token", [""])[0], form.get("choice", [""])[0]
    try:
        terms = provider.read_token(token)
    except (ValueError, KeyError, TypeError) as exc:
        return _page("Checkout unavailable", f"<p>{html.escape(str(exc))}</p>", 400)
    if choice == "cancel":
        return RedirectResponse(str(terms["cancel"]), status_code=303)
    if choice not in ("pay", "decline"):
        return _page("Checkout", "<p>Choose pay, decline or cancel.</p>", 400)
    headers, body = provider.notification(terms, choice == "pay", time.time())
    payments: Payments = request.app.state.payments
    try:
        await payments.deliver(provider, headers, body)
    except DB_ERRORS as exc:
        log.warning("payments: sandbox notification for %s not applied: %s", terms["ref"], exc)
        return _page("Try again", "<p>The shop could not record this payment. Try again.</p>", 503)
    return RedirectResponse(str(terms["return"]), status_code=303)


ENDPOINTS = [
    Endpoint("POST", "/api/payments/webhooks/{provider:str}", webhook,
             "A payment provider's notification (signed; verified before it is read)",
             "payments", errors=(400, 404, 413, 503), raw_body="application/octet-stream"),
]  # fmt: skip
