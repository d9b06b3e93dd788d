"""What moves an order after the buyer's request: provider events (webhooks, the sandbox page,
the reconciler's lookups), refunds run against the provider, and what a capture sets off (a
tip posted to chat in the capture's own transaction; receipts mailed after its commit).

One `Payments` per process, on ``app.state.payments``; every state change itself is in
`db.orders`, which makes each provider event count once however often it is delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg

from config.secrets import derived_key
from config.settings import Settings
from db import chat as chat_db
from db import orders
from db.errors import DB_ERRORS
from db.pools import Database
from db.types import Connection
from web.mail import Mail, Mailer, MailError
from web.payments.money import display
from web.payments.provider import (
    EventKind,
    Provider,
    ProviderError,
    ProviderEvent,
    RefundRequest,
    RefundStatus,
    WebhookRejected,
    WebhookReply,
)

log = logging.getLogger(__name__)

SANDBOX_PURPOSE = b"streamd sandbox payments"
#: The reconciler leaves an order this long to its webhook before asking the provider.
LOOKUP_AFTER_S = 60.0
#: A pending refund is retried (same idempotency key) after this long without an answer.
REFUND_RETRY_AFTER_S = 60.0
BATCH = 100


def build_providers(settings: Settings) -> dict[str, Provider]:
    """The providers buyers may choose (``STREAMD_PAYMENTS_PROVIDERS``), in that order;
    `config.settings` has already refused a provider without its keys, and the sandbox in
    production mode."""
    from web.payments.ecpay import (
        STAGE_PAYMENT_URL,
        STAGE_QUERY_URL,
        STAGE_REFUND_URL,
        EcpayProvider,
    )
    from web.payments.sandbox import SandboxProvider
    from web.payments.stripe_provider import StripeProvider

    built: dict[str, Provider] = {}
    for name in settings.payments_providers:
        if name == "sandbox":
            # Relative checkout URLs: the hosted page is served by whichever process answers.
            built[name] = SandboxProvider(derived_key(settings, SANDBOX_PURPOSE), "")
        elif name == "stripe":
            assert settings.stripe_secret_key and settings.stripe_webhook_secret
            built[name] = StripeProvider(
                secret_key=settings.stripe_secret_key,
                webhook_secret=settings.stripe_webhook_secret,
                api_base=settings.stripe_api_base,
            )
        elif name == "ecpay":
            assert settings.ecpay_merchant_id and settings.ecpay_hash_key
            assert settings.ecpay_hash_iv
            base = settings.ecpay_api_base

            def at(stage_url: str, base: str | None = base) -> str:
                # Same paths on any ECPay host: STREAMD_ECPAY_API_BASE swaps the host only.
                if not base:
                    return stage_url
                return base.rstrip("/") + "/" + stage_url.split("/", 3)[3]

            built[name] = EcpayProvider(
                merchant_id=settings.ecpay_merchant_id, hash_key=settings.ecpay_hash_key,
                hash_iv=settings.ecpay_hash_iv, payment_url=at(STAGE_PAYMENT_URL),
                query_url=at(STAGE_QUERY_URL), refund_url=at(STAGE_REFUND_URL),
            )  # fmt: skip
    return built


class Payments:
    def __init__(
        self, settings: Settings, db: Database, mailer: Mailer, providers: Mapping[str, Provider]
    ) -> None:
        self.settings = settings
        self.providers = dict(providers)
        self._db = db
        self._mailer = mailer

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    # --- provider events ---

    async def deliver(
        self, provider: Provider, headers: Mapping[str, str], body: bytes
    ) -> WebhookReply:
        """A webhook: verified and parsed by the provider (WebhookRejected when forged, stale,
        oversized or malformed), then each event applied once."""
        events = provider.parse_webhook(headers, body, time.time())
        for event in events:
            await self.apply(provider.name, event, actor=f"{provider.name}:{event.event_id}"[:200])
        return provider.webhook_reply()

    async def apply(self, provider: str, event: ProviderEvent, *, actor: str) -> orders.Outcome:
        async with self._db.primary.acquire() as conn, conn.transaction():
            outcome = await orders.apply_event(
                conn, provider, event, fee_bps=self.settings.payments_fee_bps, actor=actor
            )
            captured = outcome.outcome == "applied" and event.kind == EventKind.CAPTURED
            if captured and outcome.order_id is not None:
                await self._post_tip(conn, outcome.order_id)
        log.info("payments: %s event %s (%s) for order %s: %s", provider, event.event_id,
                 event.kind, outcome.order_id, outcome.outcome)  # fmt: skip
        if outcome.outcome == "review":
            log.warning("payments: order %s flagged for review by %s event %s",
                        outcome.order_id, provider, event.event_id)  # fmt: skip
        elif outcome.outcome == "unknown_order":
            log.warning("payments: %s event %s (%s) names no order here (reference %r)",
                        provider, event.event_id, event.kind, event.reference)  # fmt: skip
        if outcome.outcome == "applied" and outcome.order_id is not None:
            if captured:
                await self._receipt(outcome.order_id, "payment_receipt")
            elif event.kind == EventKind.REFUNDED:
                await self._receipt(outcome.order_id, "refund_receipt")
        return outcome

    async def _post_tip(self, conn: Connection, order_id: int) -> None:
        order = await orders.get(conn, order_id)
        if order is None or order["item_type"] != "tip":
            return
        amount, currency = int(order["amount"]), str(order["currency"])
        tip = {"amount": amount, "currency": currency, "display": display(amount, currency)}
        text = order["tip_message"] or f"tipped {tip['display']}"
        await chat_db.insert_tip(conn, live_id=int(order["live_id"]), user_id=int(order["user_id"]),
                                 order_id=order_id, text=text, tip=tip)  # fmt: skip

    # --- refunds ---

    async def run_refund(self, order_id: int, refund_id: int, *, actor: str) -> str:
        """Ask the provider for one pending refund and book its answer: the refund's status
        afterwards. A retryable provider error leaves it pending for the reconciler (which
        retries with the same idempotency key); any other marks it failed and is raised."""
        order = await orders.get(self._db.primary, order_id)
        refund = await self._db.primary.fetchrow("SELECT * FROM refunds WHERE id = $1", refund_id)
        assert order is not None and refund is not None
        if refund["status"] != "pending":
            return str(refund["status"])
        provider = self.providers.get(str(order["provider"]))
        if provider is None:
            log.warning("payments: refund %d waits: provider %s is not configured here",
                        refund_id, order["provider"])  # fmt: skip
            return "pending"
        request = RefundRequest(
            refund_id=str(refund_id), reference=str(order["reference"]),
            provider_ref=order["payment_ref"] or order["checkout_ref"],
            amount=int(refund["amount"]), captured=int(order["captured_amount"]),
            currency=str(order["currency"]), reason=refund["reason"],
        )  # fmt: skip
        try:
            result = await provider.refund(request)
        except ProviderError as exc:
            if exc.retryable:
                log.warning("payments: refund %d of order %d pending, retried later: %s",
                            refund_id, order_id, exc)  # fmt: skip
                await self._db.primary.execute(
                    "UPDATE refunds SET message = $2 WHERE id = $1", refund_id, str(exc)[:500]
                )
                return "pending"
            async with self._db.primary.acquire() as conn, conn.transaction():
                if exc.unknown:
                    await orders.refund_unknown(conn, order_id, refund_id, str(exc), actor)
                else:
                    await orders.fail_refund(conn, order_id, refund_id, str(exc), actor)
            log.warning("payments: refund %d of order %d %s: %s", refund_id, order_id,
                        "of unknown outcome" if exc.unknown else "failed", exc)  # fmt: skip
            raise
        async with self._db.primary.acquire() as conn, conn.transaction():
            locked = await orders.lock(conn, order_id)
            row = await conn.fetchrow("SELECT * FROM refunds WHERE id = $1 FOR UPDATE", refund_id)
            assert locked is not None and row is not None
            if row["status"] != "pending":
                return str(row["status"])  # its webhook booked it while we waited
            if result.status is RefundStatus.SUCCEEDED:
                await orders.succeed_refund(
                    conn, locked, row, fee_bps=self.settings.payments_fee_bps, actor=actor,
                    provider_ref=result.refund_ref,
                )  # fmt: skip
            elif result.status is RefundStatus.PENDING:
                await conn.execute(
                    "UPDATE refunds SET provider_ref = coalesce($2, provider_ref) WHERE id = $1",
                    refund_id, result.refund_ref,
                )  # fmt: skip
            else:
                message = result.message or "the provider refused"
                await orders.fail_refund(conn, order_id, refund_id, message, actor)
        log.info("payments: refund %d of order %d: %s", refund_id, order_id, result.status)
        if result.status is RefundStatus.SUCCEEDED:
            await self._receipt(order_id, "refund_receipt")
        return str(result.status)

    # --- the reconciler: orders whose webhook never came, refunds left pending ---

    async def reconcile_once(self) -> int:
        """One pass; the number of orders and refunds it changed."""
        changed = 0
        rows = await orders.open_orders(self._db.primary, older_than_s=LOOKUP_AFTER_S, limit=BATCH)
        for order in rows:
            try:
                changed += await self._reconcile_order(order)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad order must not stop the others, nor the refunds
                log.exception("payments: reconciling order %d failed", order["id"])
        stuck = await orders.claim_stuck_refunds(
            self._db.primary, older_than_s=REFUND_RETRY_AFTER_S, limit=BATCH
        )
        for refund in stuck:
            try:
                status = await self.run_refund(
                    int(refund["order_id"]), int(refund["id"]), actor="reconciler"
                )
                changed += status != "pending"
            except ProviderError:
                changed += 1  # marked failed or unknown (and logged) by run_refund
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payments: retrying refund %d failed", refund["id"])
        return changed

    async def _reconcile_order(self, order: asyncpg.Record) -> int:
        provider = self.providers.get(str(order["provider"]))
        if provider is not None and order["status"] == "pending":
            ref = order["checkout_ref"] or order["payment_ref"]
            try:
                event = await provider.lookup(str(order["reference"]), ref)
            except (ProviderError, WebhookRejected) as exc:
                # Not expired while the provider cannot say: the buyer may have paid.
                log.warning("payments: lookup of order %d at %s failed: %s",
                            order["id"], provider.name, exc)  # fmt: skip
                return 0
            if event is not None:
                outcome = await self.apply(provider.name, event, actor="reconciler")
                return int(outcome.outcome == "applied")
        if order["expires_at"] > datetime.now(UTC):
            return 0
        async with self._db.primary.acquire() as conn, conn.transaction():
            locked = await orders.lock(conn, int(order["id"]))
            if locked is None or locked["status"] not in orders.OPEN:
                return 0
            await orders.transition(conn, locked, "expired", "reconciler", kind="expired")
        log.info("payments: order %d expired unpaid", order["id"])
        return 1

    async def run(self, interval: float) -> None:
        """The reconciler: a background task of the app (every process runs one; the row
        locks and the event ids make concurrent passes harmless)."""
        while True:
            try:
                if changed := await self.reconcile_once():
                    log.info("payments: the reconciler changed %d orders or refunds", changed)
            except asyncio.CancelledError:
                raise
            except DB_ERRORS as exc:
                log.warning("payments: reconciler pass failed: %s", exc)
            except Exception:  # a bug must not end the task for the life of the process
                log.exception("payments: reconciler pass failed")
            await asyncio.sleep(interval)

    # --- receipts ---

    async def _receipt(self, order_id: int, kind: str) -> None:
        row = await self._db.primary.fetchrow(
            """SELECT o.*, u.email, u.username FROM orders o JOIN users u ON u.id = o.user_id
                WHERE o.id = $1""",
            order_id,
        )
        if row is None:
            return
        link = f"{self.settings.http_base_url()}/payments/{order_id}"
        paid = display(int(row["captured_amount"]), str(row["currency"]))
        if kind == "payment_receipt":
            subject = f"Your streamd receipt: {row['description']}"
            lines = [f"Thank you, {row['username']}. We received your payment.", "",
                     f"  {row['description']}", f"  Paid: {paid}"]  # fmt: skip
        else:
            refunded = display(int(row["refunded_amount"]), str(row["currency"]))
            subject = f"Refund for {row['description']}"
            lines = [f"Hello {row['username']}, your payment was refunded.", "",
                     f"  {row['description']}", f"  Paid: {paid}",
                     f"  Refunded: {refunded}"]  # fmt: skip
        lines += [f"  Order: {row['reference']} ({row['provider']})", "",
                  f"Details and history: {link}", ""]  # fmt: skip
        try:
            await self._mailer.send(Mail(to=str(row["email"]), subject=subject[:200],
                                         body="\n".join(lines), kind=kind))  # fmt: skip
        except (MailError, *DB_ERRORS) as exc:  # the payment stands; the receipt is a courtesy
            log.warning("payments: %s for order %d not sent: %s", kind, order_id, exc)
