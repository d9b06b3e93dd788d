"""ECPay (綠界) All-in-One credit-card payments, behind the `Provider` contract.

- Checkout: a form the buyer's browser POSTs to ``/Cashier/AioCheckOut/V5`` (``ChoosePayment=
  Credit``), signed with CheckMacValue. Nothing is sent to ECPay from here.
- Notification: ECPay POSTs the result to ``ReturnURL`` (form-encoded, signed) and resends it
  (every 5-15 minutes, 4 times that day) until it reads the plain text ``1|OK``.
- Refund: ``/CreditDetail/DoAction`` (``R``; or ``E`` then ``N`` before the nightly close).
- Lookup: ``/Cashier/QueryTradeInfo/V5``.

The wire format lives in pure functions (`check_mac_value`, `checkout_form`,
`parse_notification`, `parse_query_answer`, `parse_do_action_answer`): no I/O, no clock; the
class only adds httpx and the injected clock. Sources: developers.ecpay.com.tw, 全方位金流 API:
?p=2902 (檢查碼機制), ?p=2878 (付款結果通知), ?p=2890 (查詢訂單), ?p=9242 (信用卡請退款).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import httpx

from web.payments.money import check_amount
from web.payments.provider import (
    MAX_WEBHOOK_BYTES,
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

STAGE_PAYMENT_URL = "https://payment-stage.ecpay.com.tw/Cashier/AioCheckOut/V5"
STAGE_QUERY_URL = "https://payment-stage.ecpay.com.tw/Cashier/QueryTradeInfo/V5"
# Stage trades are no real card authorizations, so DoAction may find nothing to act on there;
# the stage host is the default all the same, so that nothing reaches production unconfigured.
STAGE_REFUND_URL = "https://payment-stage.ecpay.com.tw/CreditDetail/DoAction"

#: Taiwan has kept UTC+8 without daylight saving since 1979: no tz database needed.
TAIPEI = timezone(timedelta(hours=8), "Asia/Taipei")
ECPAY_TIME = "%Y/%m/%d %H:%M:%S"
CURRENCY = "TWD"

# Characters .NET's HttpUtility.UrlEncode leaves alone: the ".NET編碼(ecpay)" column of ECPay's
# URLEncode table (附錄), which its PHP SDK reproduces by un-escaping these after urlencode().
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!*()")
_REFERENCE = re.compile(r"[A-Za-z0-9]{1,20}")
_WHOLE = re.compile(r"[0-9]{1,9}")
# '#' separates items in ItemName; '&' and '=' would split fields of QueryTradeInfo answers,
# which carry ItemName unencoded; TradeDesc may hold no "special characters" (ECPay's words, no
# list given): markup and quotes go.
_UNSAFE_TEXT = frozenset("#&=<>\"'\\")
_ITEM_NAME_MAX = 400  # characters (AioCheckOut: ECPay truncates longer names, breaking the MAC)
_TRADE_DESC_MAX = 200
_URL_MAX = 200
_MAX_FIELDS = 100  # a notification has ~15 fields: anything far beyond is not ECPay
_MAX_ANSWER_BYTES = 64 * 1024

# QueryTradeInfo's TradeStatus (?p=2890); 10200047 is what ECPay answers for an order it never
# saw (the form was not posted), recorded from the stage server.
_TRADE_PAID = "1"
_TRADE_UNPAID = "0"
_TRADE_FAILED = "10200095"
_TRADE_UNKNOWN = "10200047"


def ecpay_urlencode(text: str) -> str:
    """URL-encode like .NET's ``HttpUtility.UrlEncode`` (UTF-8, space as '+', ``-_.!*()`` kept),
    lower-cased, which is what ECPay hashes. PHP's urlencode and Python's quote_plus differ
    (``~``, ``!*()``), hence the byte loop."""
    out: list[str] = []
    for byte in text.encode("utf-8"):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02x}")
    return "".join(out).lower()


def check_mac_value(params: Mapping[str, str], hash_key: str, hash_iv: str) -> str:
    """ECPay's CheckMacValue with EncryptType=1 (SHA256), ?p=2902: every field but
    CheckMacValue, sorted by name case-insensitively, between ``HashKey=`` and ``HashIV=``."""
    fields = sorted(
        ((name, value) for name, value in params.items() if name != "CheckMacValue"),
        key=lambda item: item[0].lower(),
    )
    joined = "".join(f"&{name}={value}" for name, value in fields)
    raw = f"HashKey={hash_key}{joined}&HashIV={hash_iv}"
    return hashlib.sha256(ecpay_urlencode(raw).encode("ascii")).hexdigest().upper()


@dataclass(frozen=True, slots=True)
class Credentials:
    merchant_id: str
    hash_key: str = field(repr=False)
    hash_iv: str = field(repr=False)

    def sign(self, params: Mapping[str, str]) -> dict[str, str]:
        return {**params, "CheckMacValue": check_mac_value(params, self.hash_key, self.hash_iv)}

    def verify(self, params: Mapping[str, str]) -> bool:
        received = params.get("CheckMacValue")
        if received is None:
            return False
        expected = check_mac_value(params, self.hash_key, self.hash_iv)
        return hmac.compare_digest(expected.encode(), received.upper().encode())


def _clean(text: str, limit: int) -> str:
    """Control characters and runs of whitespace as one space, unsafe characters dropped,
    trimmed to ``limit`` characters."""
    kept = (
        " " if ch.isspace() or unicodedata.category(ch).startswith("C") else ch
        for ch in text
        if ch not in _UNSAFE_TEXT
    )
    return " ".join("".join(kept).split())[:limit].strip()


def _check_reference(reference: str) -> None:
    if not _REFERENCE.fullmatch(reference):
        raise ProviderError("the order reference must be 1 to 20 letters or digits for ECPay")


def _whole_dollars(amount: int, currency: str) -> int:
    """Minor units to ECPay's whole New Taiwan dollars (`money.check_amount` refuses cents)."""
    if currency != CURRENCY:
        raise ProviderError(f"ECPay charges only in {CURRENCY}, not {currency}")
    check_amount(amount, currency)
    return amount // 100


def checkout_form(request: CheckoutRequest, credentials: Credentials, now: float) -> dict[str, str]:
    """The signed AioCheckOut/V5 form for a one-off credit-card payment.

    ECPay takes no expiry for credit cards (ExpireDate and StoreExpireDate are ATM/CVS only):
    the form stays payable, so a payment can land after ``expires_at`` and the order layer must
    refund it. ``return_url`` is the ClientBackURL (a plain GET link, shown before and after
    payment); OrderResultURL is not used, as it would POST an unverified copy of the result to a
    page. ECPay has a single "back to the shop" link, so ``cancel_url`` has no place here.
    """
    _check_reference(request.reference)
    total = _whole_dollars(request.amount, request.currency)
    for url in (request.notify_url, request.return_url):
        if not url or len(url) > _URL_MAX:
            raise ProviderError(f"ECPay takes URLs of 1 to {_URL_MAX} characters")
    item_name = _clean(request.description, _ITEM_NAME_MAX) or request.reference
    form = {
        "MerchantID": credentials.merchant_id,
        "MerchantTradeNo": request.reference,
        "MerchantTradeDate": datetime.fromtimestamp(now, TAIPEI).strftime(ECPAY_TIME),
        "PaymentType": "aio",
        "TotalAmount": str(total),
        "TradeDesc": _clean(request.description, _TRADE_DESC_MAX) or request.reference,
        "ItemName": item_name,
        "ReturnURL": request.notify_url,
        "ClientBackURL": request.return_url,
        "ChoosePayment": "Credit",
        "EncryptType": "1",
    }
    return credentials.sign(form)


def _form_fields(text: str) -> dict[str, str]:
    """A form-encoded body as a dict; ValueError for anything ambiguous (a repeated field:
    which of the two did the MAC cover?)."""
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        strict_parsing=bool(text),
        encoding="utf-8",
        errors="strict",
        max_num_fields=_MAX_FIELDS,
    )
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a field is repeated")
    return fields


def _whole(value: str | None) -> int | None:
    return int(value) if value is not None and _WHOLE.fullmatch(value) else None


def _event_id(trade_no: str, code: str) -> str:
    """ECPay has no event id. A TradeNo is one payment attempt, and its resends repeat TradeNo
    and RtnCode (RtnMsg changes: 交易成功 first, "paid" on resends), so the pair is the key;
    `parse_query_answer` derives the same key, so a capture seen by both dedups to one."""
    return f"{trade_no}:{code}"


def parse_notification(
    body: bytes, content_type: str, credentials: Credentials
) -> list[ProviderEvent]:
    """ECPay's ReturnURL notification as events; WebhookRejected for anything else.

    The CheckMacValue is verified before any field is read. A simulated payment (SimulatePaid=1,
    sent from ECPay's back office to test the ReturnURL) is acknowledged with no event: ECPay
    pays nothing for it, says not to ship on it, and it does not change the trade's status.
    """
    if len(body) > MAX_WEBHOOK_BYTES:
        raise WebhookRejected("too_large", f"notification of {len(body)} bytes")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise WebhookRejected("malformed", f"content type {media_type or 'missing'}")
    try:
        fields = _form_fields(body.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError included
        raise WebhookRejected("malformed", f"not a form body: {exc}") from exc
    if not credentials.verify(fields):
        raise WebhookRejected("bad_signature", "CheckMacValue missing or wrong")
    if fields.get("MerchantID") != credentials.merchant_id:
        # Signed with our keys yet addressed to another merchant id: not ours to apply.
        raise WebhookRejected("bad_signature", "notification for another MerchantID")
    if fields.get("SimulatePaid") == "1":
        return []
    reference = fields.get("MerchantTradeNo", "")
    trade_no = fields.get("TradeNo", "")
    code = fields.get("RtnCode", "")
    amount = _whole(fields.get("TradeAmt"))
    if not (_REFERENCE.fullmatch(reference) and trade_no and code and amount is not None):
        raise WebhookRejected("malformed", "MerchantTradeNo, TradeNo, RtnCode or TradeAmt missing")
    paid = code == "1"
    return [
        ProviderEvent(
            event_id=_event_id(trade_no, code),
            kind=EventKind.CAPTURED if paid else EventKind.FAILED,
            reference=reference,
            provider_ref=trade_no,
            amount=amount * 100,
            currency=CURRENCY,
            message=None if paid else fields.get("RtnMsg") or f"ECPay RtnCode {code}",
            raw=dict(fields),
        )
    ]


def query_form(reference: str, credentials: Credentials, now: float) -> dict[str, str]:
    _check_reference(reference)
    # TimeStamp: ECPay refuses a query more than 3 minutes from it.
    params = {
        "MerchantID": credentials.merchant_id,
        "MerchantTradeNo": reference,
        "TimeStamp": str(int(now)),
    }
    return credentials.sign(params)


def _raw_fields(text: str) -> dict[str, str] | None:
    fields: dict[str, str] = {}
    for part in text.split("&"):
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            return None
        fields[name] = value
    return fields


def _verified_answer(text: str, credentials: Credentials) -> dict[str, str]:
    """QueryTradeInfo's answer, once its CheckMacValue holds. The stage server sends values
    unencoded ("ItemName=A%41 B+C"), the official SDK reads them with PHP's parse_str: the MAC
    decides which reading ECPay signed (either way only the key holder could sign it)."""
    candidates = [_raw_fields(text)]
    with contextlib.suppress(ValueError):
        candidates.append(_form_fields(text))
    for fields in candidates:
        if fields is not None and credentials.verify(fields):
            return fields
    raise ProviderError("ECPay's answer failed its CheckMacValue check")


def parse_query_answer(text: str, reference: str, credentials: Credentials) -> ProviderEvent | None:
    """QueryTradeInfo/V5's answer: CAPTURED once paid, FAILED when ECPay gave up on the
    payment, None while unpaid or when ECPay never saw the order (the buyer did not post the
    form: it could still be posted, as ECPay sets no expiry on it)."""
    fields = _verified_answer(text, credentials)
    if (
        fields.get("MerchantID") != credentials.merchant_id
        or fields.get("MerchantTradeNo") != reference
    ):
        raise ProviderError("ECPay answered about another merchant or order")
    status = fields.get("TradeStatus", "")
    trade_no = fields.get("TradeNo", "")
    if status in (_TRADE_UNPAID, _TRADE_UNKNOWN):
        return None
    amount = _whole(fields.get("TradeAmt"))
    if status == _TRADE_FAILED:
        return ProviderEvent(
            event_id=_event_id(trade_no or reference, status),
            kind=EventKind.FAILED,
            reference=reference,
            provider_ref=trade_no or None,
            amount=(amount or 0) * 100,
            currency=CURRENCY,
            message="ECPay: the payment was not completed",
            raw=dict(fields),
        )
    if status != _TRADE_PAID or not trade_no or amount is None:
        raise ProviderError(f"ECPay answered an unexpected TradeStatus {status!r}")
    return ProviderEvent(
        event_id=_event_id(trade_no, "1"),
        kind=EventKind.CAPTURED,
        reference=reference,
        provider_ref=trade_no,
        amount=amount * 100,
        currency=CURRENCY,
        raw=dict(fields),
    )


def do_action_form(
    reference: str, trade_no: str, action: str, dollars: int, credentials: Credentials
) -> dict[str, str]:
    params = {
        "MerchantID": credentials.merchant_id,
        "MerchantTradeNo": reference,
        "TradeNo": trade_no,
        "Action": action,
        "TotalAmount": str(dollars),
    }
    return credentials.sign(params)


def parse_do_action_answer(text: str, reference: str) -> tuple[bool, str]:
    """DoAction's answer (form-encoded, unsigned): (accepted, ECPay's message)."""
    try:
        fields = _form_fields(text)
    except ValueError as exc:
        raise ProviderError("ECPay's DoAction answer is not a form") from exc
    code = fields.get("RtnCode")
    if code is None or fields.get("MerchantTradeNo", reference) != reference:
        raise ProviderError("ECPay's DoAction answer is not about this order")
    return code == "1", fields.get("RtnMsg") or f"RtnCode {code}"


def in_nightly_close(now: float) -> bool:
    """ECPay asks for no DoAction from 20:15 to 20:30 Taiwan time, while it closes the day."""
    local = datetime.fromtimestamp(now, TAIPEI)
    return (20, 15) <= (local.hour, local.minute) < (20, 30)


class EcpayProvider:
    """The adapter: `checkout_form` and friends plus httpx and a clock."""

    name = "ecpay"
    currencies = frozenset({CURRENCY})

    def __init__(
        self,
        *,
        merchant_id: str,
        hash_key: str,
        hash_iv: str,
        payment_url: str = STAGE_PAYMENT_URL,
        query_url: str = STAGE_QUERY_URL,
        refund_url: str = STAGE_REFUND_URL,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not (merchant_id and hash_key and hash_iv):
            raise ValueError("ECPay needs a MerchantID, HashKey and HashIV")
        self._credentials = Credentials(merchant_id, hash_key, hash_iv)
        self._payment_url = payment_url
        self._query_url = query_url
        self._refund_url = refund_url
        self._clock = clock
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers={"Accept": "text/html, text/plain"},
        )

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        form = checkout_form(request, self._credentials, self._clock())
        return Checkout(url=self._payment_url, form=form)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[ProviderEvent]:
        """``now`` is unused: ECPay signs no timestamp and resends the same notification over a
        day, so there is no freshness to check; replays dedup on the event id instead."""
        return parse_notification(body, headers.get("content-type", ""), self._credentials)

    def webhook_reply(self) -> WebhookReply:
        return WebhookReply(status=200, body=b"1|OK", content_type="text/plain")

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Partial refunds are ``R``. A full refund is ``R`` once the trade is closed (after
        the nightly close, the usual case); if ECPay refuses it, the trade is still "to be
        closed" (要關帳: ``E`` cancels the close, then ``N`` abandons the authorization) or only
        authorized (``N`` alone). ``N`` is accepted only in the authorized state, so running
        E-then-N whatever E answered is safe, and a retry after a failure midway ends the job.
        """
        _check_reference(request.reference)
        dollars = _whole_dollars(request.amount, request.currency)
        captured = _whole_dollars(request.captured, request.currency)
        if dollars > captured:
            raise ProviderError("a refund cannot exceed the captured amount")
        if not request.provider_ref:
            raise ProviderError("an ECPay refund needs the trade's TradeNo")
        if in_nightly_close(self._clock()):
            raise ProviderError("ECPay closes the day from 20:15 to 20:30", retryable=True)
        trade_no = request.provider_ref
        # DoAction takes no idempotency key. E and N only act in one state, and a full R cannot
        # be applied twice; a partial R can: if its answer is lost it must not be resent blindly.
        accepted, refused = await self._do_action(
            request.reference, trade_no, "R", dollars, replayable=dollars == captured
        )
        if accepted:
            return RefundResult(RefundStatus.SUCCEEDED, None, "ECPay DoAction R")
        if dollars < captured:
            raise ProviderError(f"ECPay refused the refund: {refused}")
        _, cancel_msg = await self._do_action(request.reference, trade_no, "E", captured)
        accepted, abandon_msg = await self._do_action(request.reference, trade_no, "N", captured)
        if accepted:
            return RefundResult(RefundStatus.SUCCEEDED, None, "ECPay DoAction N")
        raise ProviderError(
            f"ECPay refused the refund: R: {refused}; E: {cancel_msg}; N: {abandon_msg}"
        )

    async def lookup(self, reference: str, provider_ref: str | None) -> ProviderEvent | None:
        form = query_form(reference, self._credentials, self._clock())
        answer = await self._post(self._query_url, form, replayable=True)
        return parse_query_answer(answer, reference, self._credentials)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _do_action(
        self, reference: str, trade_no: str, action: str, dollars: int, *, replayable: bool = True
    ) -> tuple[bool, str]:
        form = do_action_form(reference, trade_no, action, dollars, self._credentials)
        answer = await self._post(self._refund_url, form, replayable=replayable)
        return parse_do_action_answer(answer, reference)

    async def _post(self, url: str, form: Mapping[str, str], *, replayable: bool) -> str:
        try:
            response = await self._http.post(url, data=dict(form))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached ECPay: always safe to try again.
            raise ProviderError("ECPay could not be reached", retryable=True) from exc
        except httpx.HTTPError as exc:
            message = f"ECPay did not answer ({type(exc).__name__})"
            if not replayable:
                message += ": the outcome is unknown, check ECPay's back office before retrying"
            raise ProviderError(message, retryable=replayable, unknown=not replayable) from exc
        if response.status_code == 403:  # ECPay's answer to calls made too fast
            raise ProviderError("ECPay is rate limiting this merchant", retryable=True)
        if response.status_code in (502, 503) or (response.status_code >= 500 and replayable):
            # A gateway's answer: the request did not get through (or asking again is harmless).
            raise ProviderError(f"ECPay answered HTTP {response.status_code}", retryable=True)
        if response.status_code >= 500:
            # 504 included: a gateway that gave up waiting, while ECPay may have done it.
            raise ProviderError(
                f"ECPay answered HTTP {response.status_code}: the outcome is unknown, check"
                " ECPay's back office before retrying", unknown=True,
            )  # fmt: skip
        if response.status_code != 200:
            raise ProviderError(f"ECPay answered HTTP {response.status_code}")
        if len(response.content) > _MAX_ANSWER_BYTES:
            raise ProviderError("ECPay's answer is too large")
        return response.content.decode("utf-8", errors="replace")
