"""web.payments.ecpay: CheckMacValue against ECPay's documented example, the notification parser
fed forged, tampered and odd bodies, and the whole flow against the local fake ECPay
(tests/web/payments/ecpay_fake.py): checkout form -> payment -> signed notification to a real
ReturnURL endpoint -> lookup -> refunds through DoAction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.helpers import free_port
from tests.web.payments.ecpay_fake import (
    ABANDONED,
    CLOSED,
    HASH_IV,
    HASH_KEY,
    MERCHANT_ID,
    TO_CLOSE,
    EcpayFake,
    Served,
    php_style_mac,
    serve,
)
from web.payments.ecpay import (
    STAGE_PAYMENT_URL,
    Credentials,
    EcpayProvider,
    check_mac_value,
    ecpay_urlencode,
    parse_query_answer,
)
from web.payments.money import AmountError
from web.payments.provider import (
    MAX_WEBHOOK_BYTES,
    CheckoutRequest,
    EventKind,
    Provider,
    ProviderError,
    ProviderEvent,
    RefundRequest,
    RefundStatus,
    WebhookRejected,
    WebhookReply,
)

FORM = {"content-type": "application/x-www-form-urlencoded"}
# 10:00 in Taipei (UTC+8): written in UTC so that the adapter's time zone is what is tested.
MORNING = datetime(2026, 3, 2, 2, 0, 0, tzinfo=UTC).timestamp()


@dataclass
class Clock:
    now: float = MORNING

    def __call__(self) -> float:
        return self.now


def order(reference: str = "T20260302A", amount: int = 15000, **changes: object) -> CheckoutRequest:
    request = CheckoutRequest(
        reference=reference,
        amount=amount,
        currency="TWD",
        description="Ticket: 週末直播 Live",
        buyer_email="buyer@example.com",
        return_url="https://streamd.example/orders/return",
        cancel_url="https://streamd.example/orders/cancel",
        notify_url="https://streamd.example/api/payments/ecpay/notify",
        expires_at=datetime.fromtimestamp(MORNING, UTC) + timedelta(minutes=30),
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def refund(trade_no: str, amount: int, captured: int = 15000) -> RefundRequest:
    return RefundRequest(
        refund_id="rf1",
        reference="T20260302A",
        provider_ref=trade_no,
        amount=amount,
        captured=captured,
        currency="TWD",
        reason=None,
    )


def notification(**changes: str) -> dict[str, str]:
    """A ReturnURL notification as ECPay sends it (?p=2878), signed with the fake's keys."""
    fields = {
        "CustomField1": "",
        "CustomField2": "",
        "CustomField3": "",
        "CustomField4": "",
        "MerchantID": MERCHANT_ID,
        "MerchantTradeNo": "T20260302A",
        "PaymentDate": "2026/03/02 10:01:13",
        "PaymentType": "Credit_CreditCard",
        "PaymentTypeChargeFee": "3",
        "RtnCode": "1",
        "RtnMsg": "交易成功",
        "SimulatePaid": "0",
        "StoreID": "",
        "TradeAmt": "150",
        "TradeDate": "2026/03/02 10:00:02",
        "TradeNo": "2603021000020001",
    }
    fields.update(changes)
    return {**fields, "CheckMacValue": php_style_mac(fields, HASH_KEY, HASH_IV)}


def body(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def rejection(provider: EcpayProvider, raw: bytes, headers: dict[str, str] = FORM) -> str:
    with pytest.raises(WebhookRejected) as caught:
        provider.parse_webhook(headers, raw, time.time())
    return caught.value.code


@dataclass
class Merchant:
    """streamd's side of the ReturnURL: parse_webhook, then the adapter's reply (or a scripted
    wrong one, to make ECPay resend)."""

    provider: EcpayProvider
    events: list[ProviderEvent] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    wrong_replies: list[bytes] = field(default_factory=list)
    served: Served | None = None

    @property
    def notify_url(self) -> str:
        assert self.served is not None
        return self.served.base_url + "/api/payments/ecpay/notify"

    async def notify(self, request: Request) -> Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            events = self.provider.parse_webhook(headers, await request.body(), time.time())
        except WebhookRejected as exc:
            self.rejected.append(exc.code)
            return PlainTextResponse(exc.code, status_code=400)
        self.events.extend(events)
        if self.wrong_replies:
            return Response(self.wrong_replies.pop(0), media_type="text/plain")
        reply = self.provider.webhook_reply()
        return Response(reply.body, reply.status, media_type=reply.content_type)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[EcpayFake]:
    server = EcpayFake(clock=clock)
    await server.start()
    yield server
    await server.stop()


def adapter(clock: Clock, base_url: str | None = None, timeout_s: float = 10.0) -> EcpayProvider:
    """The adapter on the fake's keys; at ``base_url`` (else ECPay's stage URLs)."""
    if base_url is None:
        return EcpayProvider(
            merchant_id=MERCHANT_ID, hash_key=HASH_KEY, hash_iv=HASH_IV, clock=clock
        )
    return EcpayProvider(
        merchant_id=MERCHANT_ID,
        hash_key=HASH_KEY,
        hash_iv=HASH_IV,
        payment_url=base_url + "/Cashier/AioCheckOut/V5",
        query_url=base_url + "/Cashier/QueryTradeInfo/V5",
        refund_url=base_url + "/CreditDetail/DoAction",
        clock=clock,
        timeout_s=timeout_s,
    )


@pytest.fixture
async def offline(clock: Clock) -> AsyncIterator[EcpayProvider]:
    """The adapter with ECPay's stage URLs: for what needs no network."""
    provider = adapter(clock)
    yield provider
    await provider.aclose()


@pytest.fixture
async def provider(fake: EcpayFake, clock: Clock) -> AsyncIterator[EcpayProvider]:
    provider = adapter(clock, fake.base_url)
    yield provider
    await provider.aclose()


@pytest.fixture
async def merchant(provider: EcpayProvider) -> AsyncIterator[Merchant]:
    merchant = Merchant(provider)
    app = Starlette(routes=[Route("/api/payments/ecpay/notify", merchant.notify, methods=["POST"])])
    merchant.served = await serve(app)
    yield merchant
    await merchant.served.stop()


async def checked_out(provider: EcpayProvider, merchant: Merchant) -> None:
    """T20260302A checked out for NT$150 through a real form POST to the fake."""
    checkout = await provider.create_checkout(order(notify_url=merchant.notify_url))
    assert checkout.form is not None
    async with httpx.AsyncClient() as browser:
        page = await browser.post(checkout.url, data=dict(checkout.form))
    assert page.status_code == 200, page.text


async def paid_trade(fake: EcpayFake, provider: EcpayProvider, merchant: Merchant) -> str:
    """T20260302A checked out, then paid: its TradeNo."""
    await checked_out(provider, merchant)
    deliveries = await fake.pay("T20260302A")
    assert [d.acknowledged for d in deliveries] == [True]
    return fake.trades["T20260302A"].trade_no


# -- CheckMacValue


def test_check_mac_value_documented_example() -> None:
    """ECPay's worked example of CheckMacValue (SHA256), from 全方位金流 API 技術文件, 附錄 /
    檢查碼機制: https://developers.ecpay.com.tw/?p=2902 (the AioCheckOut parameters below, the
    public stage merchant 3002607's HashKey and HashIV, and the resulting value)."""
    params = {
        "TradeDesc": "促銷方案",
        "PaymentType": "aio",
        "MerchantTradeDate": "2023/03/12 15:30:23",
        "MerchantTradeNo": "ecpay20230312153023",
        "MerchantID": "3002607",
        "ReturnURL": "https://www.ecpay.com.tw/receive.php",
        "ItemName": "Apple iphone 15",
        "TotalAmount": "30000",
        "ChoosePayment": "ALL",
        "EncryptType": "1",
    }
    expected = "6C51C9E6888DE861FD62FB1DD17029FC742634498FD813DC43D4243B5685B840"
    assert check_mac_value(params, "pwFHCqoQZGmho4w6", "EkRm7iFT261dpevs") == expected
    # The document's step (3), before lower-casing, shows the same encoding, e.g.:
    assert ecpay_urlencode("ItemName=Apple iphone 15&TradeDesc=促銷方案") == (
        "itemname%3dapple+iphone+15%26tradedesc%3d%e4%bf%83%e9%8a%b7%e6%96%b9%e6%a1%88"
    )
    signed = Credentials("3002607", "pwFHCqoQZGmho4w6", "EkRm7iFT261dpevs")
    assert signed.verify({**params, "CheckMacValue": expected})
    assert not signed.verify({**params, "TotalAmount": "30001", "CheckMacValue": expected})


def test_urlencode_is_dotnet_httputility() -> None:
    """.NET keeps ``-_.!*()``, turns spaces into '+', escapes '~' and "'" (Python's quote_plus
    keeps '~', PHP escapes '!*()'): ECPay's URLEncode table."""
    assert ecpay_urlencode("a b-_.!*()~'+%&=/:") == "a+b-_.!*()%7e%27%2b%25%26%3d%2f%3a"
    assert ecpay_urlencode("ÄB") == "%c3%84b"


def test_query_answers_recorded_from_the_stage_server() -> None:
    """QueryTradeInfo answers of ECPay's stage server (merchant 3002607) as a third-party project
    published them in its tests: values come unencoded ("A%41 B+C 50%" is literal) and the MAC
    covers them as they are. The public stage keys reproduce the recorded MACs."""
    stage = Credentials("3002607", "pwFHCqoQZGmho4w6", "EkRm7iFT261dpevs")
    paid = (
        "CustomField1=&CustomField2=&CustomField3=&CustomField4=&HandlingCharge=60"
        "&ItemName=粉色玫瑰花束 x1#紫色鬱金香盆栽 x1&MerchantID=3002607"
        "&MerchantTradeNo=ORD20260927D300D&PaymentDate=2026/09/27 16:30:59"
        "&PaymentType=Credit_CreditCard&PaymentTypeChargeFee=61&StoreID=&TradeAmt=2430"
        "&TradeDate=2026/09/27 16:28:39&TradeNo=2609271628390061&TradeStatus=1"
        "&CheckMacValue=A75D7DC7111B63171B25659CD256D8B0BEE62F85D003F6E8B1C9D79F0567E388"
    )
    unpaid = (
        "CustomField1=&CustomField2=&CustomField3=&CustomField4=&HandlingCharge=0"
        "&ItemName=A%41 B+C 50% x1#玫瑰&MerchantID=3002607&MerchantTradeNo=CMVT1790500783393"
        "&PaymentDate=&PaymentType=&PaymentTypeChargeFee=0&StoreID=&TradeAmt=100"
        "&TradeDate=2026/09/27 17:19:43&TradeNo=2609271719430090&TradeStatus=0"
        "&CheckMacValue=A4CB290D6DEC3243B24F8D2DC18F6F88EDA20EA79636A2DF1028CAEF7AD3294A"
    )
    unknown = (
        "HandlingCharge=0&ItemName=&MerchantID=3002607&MerchantTradeNo=PRB1790506627828"
        "&PaymentDate=&PaymentType=&PaymentTypeChargeFee=0&TradeAmt=0&TradeDate=&TradeNo="
        "&TradeStatus=10200047"
        "&CheckMacValue=5648F8E8354B11940F611ADE50CCA58DD4916DCC960DF7BF4D73960DBE432366"
    )
    event = parse_query_answer(paid, "ORD20260927D300D", stage)
    assert event is not None and event.kind is EventKind.CAPTURED
    assert (event.amount, event.currency, event.provider_ref) == (243000, "TWD", "2609271628390061")
    assert event.event_id == "2609271628390061:1"
    assert parse_query_answer(unpaid, "CMVT1790500783393", stage) is None
    assert parse_query_answer(unknown, "PRB1790506627828", stage) is None
    with pytest.raises(ProviderError, match="CheckMacValue"):
        parse_query_answer(paid.replace("TradeAmt=2430", "TradeAmt=1"), "ORD20260927D300D", stage)
    with pytest.raises(ProviderError, match="another merchant or order"):
        parse_query_answer(paid, "ORD20260927D300E", stage)


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
_values = st.text(st.characters(codec="utf-8"), max_size=30)


@given(st.dictionaries(_names, _values, max_size=12))
def test_check_mac_value_matches_the_php_sdk_way(params: dict[str, str]) -> None:
    """The adapter's byte loop and the fake's PHP-SDK-style computation agree on any text."""
    if len({name.lower() for name in params}) != len(params):
        return  # names equal but for case: ECPay's order between them is unspecified
    assert check_mac_value(params, HASH_KEY, HASH_IV) == php_style_mac(params, HASH_KEY, HASH_IV)


# -- the ReturnURL notification


def test_notification_with_chinese_and_special_characters(offline: EcpayProvider) -> None:
    fields = notification(CustomField1="直播 a+b=c&d ~!*()'%", CustomField2="早鳥票 #1")
    [event] = offline.parse_webhook(
        {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, body(fields), 0.0
    )
    assert event.kind is EventKind.CAPTURED
    assert (event.reference, event.provider_ref) == ("T20260302A", "2603021000020001")
    assert (event.amount, event.currency) == (15000, "TWD")
    assert event.event_id == "2603021000020001:1"
    assert event.raw["CustomField1"] == "直播 a+b=c&d ~!*()'%"
    assert offline.webhook_reply() == WebhookReply(200, b"1|OK", "text/plain")


def test_resends_dedup_on_the_same_event_id(offline: EcpayProvider) -> None:
    """ECPay's resends say RtnMsg=paid where the first said 交易成功: the same event."""
    [first] = offline.parse_webhook(FORM, body(notification()), 0.0)
    [resent] = offline.parse_webhook(FORM, body(notification(RtnMsg="paid")), 0.0)
    assert first.event_id == resent.event_id


def test_forged_or_missing_mac_is_rejected(offline: EcpayProvider) -> None:
    forged = {**notification(), "CheckMacValue": "A" * 64}
    assert rejection(offline, body(forged)) == "bad_signature"
    unsigned = notification()
    del unsigned["CheckMacValue"]
    assert rejection(offline, body(unsigned)) == "bad_signature"
    other_key = notification()
    other_key["CheckMacValue"] = php_style_mac(other_key, "someoneElsesKey1", HASH_IV)
    assert rejection(offline, body(other_key)) == "bad_signature"


def test_tampered_amount_is_rejected(offline: EcpayProvider) -> None:
    tampered = {**notification(), "TradeAmt": "1500"}
    assert rejection(offline, body(tampered)) == "bad_signature"
    # The same with the field added rather than changed.
    assert rejection(offline, body({**notification(), "StoreID": "x"})) == "bad_signature"


def test_another_merchant_id_is_rejected(offline: EcpayProvider) -> None:
    assert rejection(offline, body(notification(MerchantID="2000132"))) == "bad_signature"


def test_oversized_body_is_rejected_unread(offline: EcpayProvider) -> None:
    padded = body(notification(CustomField1="x" * MAX_WEBHOOK_BYTES))
    assert rejection(offline, padded) == "too_large"
    assert rejection(offline, b"=" * (MAX_WEBHOOK_BYTES + 1)) == "too_large"


def test_malformed_bodies_are_rejected(offline: EcpayProvider) -> None:
    good = body(notification())
    assert rejection(offline, good, {"content-type": "application/json"}) == "malformed"
    assert rejection(offline, good, {}) == "malformed"
    assert rejection(offline, good + b"&RtnCode=1") == "malformed"  # a field twice
    assert rejection(offline, b"Extra=%FF%FE&" + good) == "malformed"  # not UTF-8
    assert rejection(offline, b"\xff" + good) == "malformed"
    assert rejection(offline, b"") == "bad_signature"
    signed_without_trade_no = notification()
    del signed_without_trade_no["CheckMacValue"], signed_without_trade_no["TradeNo"]
    signed_without_trade_no["CheckMacValue"] = php_style_mac(
        signed_without_trade_no, HASH_KEY, HASH_IV
    )
    assert rejection(offline, body(signed_without_trade_no)) == "malformed"


def test_simulated_payment_is_acknowledged_without_event(offline: EcpayProvider) -> None:
    """SimulatePaid=1: ECPay's back office testing the ReturnURL; ECPay pays nothing for it."""
    assert offline.parse_webhook(FORM, body(notification(SimulatePaid="1")), 0.0) == []
    # Not a way around the MAC: a forged simulated payment is still refused.
    forged = {**notification(SimulatePaid="1"), "TradeAmt": "1"}
    assert rejection(offline, body(forged)) == "bad_signature"


def test_declined_payment_is_failed(offline: EcpayProvider) -> None:
    [event] = offline.parse_webhook(
        FORM, body(notification(RtnCode="10100248", RtnMsg="拒絕交易")), 0.0
    )
    assert event.kind is EventKind.FAILED
    assert (event.message, event.event_id) == ("拒絕交易", "2603021000020001:10100248")


# -- checkout


async def test_checkout_form_fields(offline: EcpayProvider) -> None:
    description = "Ticket: 直播 #1 <b>\n'Q&A'=fun\x00"
    checkout = await offline.create_checkout(order(description=description))
    form = checkout.form
    assert form is not None
    assert (checkout.url, checkout.provider_ref) == (STAGE_PAYMENT_URL, None)
    assert dict(form) == {
        "MerchantID": MERCHANT_ID,
        "MerchantTradeNo": "T20260302A",
        "MerchantTradeDate": "2026/03/02 10:00:00",  # Taipei time of the clock
        "PaymentType": "aio",
        "TotalAmount": "150",  # whole NT$ from 15000 minor units
        "TradeDesc": "Ticket: 直播 1 b QAfun",
        "ItemName": "Ticket: 直播 1 b QAfun",
        "ReturnURL": "https://streamd.example/api/payments/ecpay/notify",
        "ClientBackURL": "https://streamd.example/orders/return",
        "ChoosePayment": "Credit",
        "EncryptType": "1",
        "CheckMacValue": php_style_mac(form, HASH_KEY, HASH_IV),
    }
    long = await offline.create_checkout(order(description="長" * 500))
    assert long.form is not None
    assert (len(long.form["ItemName"]), len(long.form["TradeDesc"])) == (400, 200)


async def test_checkout_refuses_what_ecpay_cannot_take(offline: EcpayProvider) -> None:
    for reference in ("T-1", "T" * 21, "", "訂單1"):
        with pytest.raises(ProviderError):
            await offline.create_checkout(order(reference=reference))
    with pytest.raises(ProviderError, match="TWD"):
        await offline.create_checkout(order(currency="USD"))
    with pytest.raises(AmountError):
        await offline.create_checkout(order(amount=15050))  # NT$150.50: ECPay takes whole NT$
    with pytest.raises(ProviderError, match="URL"):
        await offline.create_checkout(order(notify_url="https://x.example/" + "n" * 200))


async def test_fake_verifies_the_checkout_form(fake: EcpayFake, provider: EcpayProvider) -> None:
    provider_as_protocol: Provider = provider
    checkout = await provider_as_protocol.create_checkout(order(description="50% off + 直播"))
    assert checkout.form is not None and checkout.url == fake.payment_url
    async with httpx.AsyncClient() as browser:
        tampered = await browser.post(checkout.url, data={**checkout.form, "TotalAmount": "1"})
        assert (tampered.status_code, tampered.text) == (400, "CheckMacValue Error")
        page = await browser.post(checkout.url, data=dict(checkout.form))
        assert page.status_code == 200, page.text
        again = await browser.post(checkout.url, data=dict(checkout.form))
        assert again.text == "MerchantTradeNo is duplicate"
    trade = fake.trades["T20260302A"]
    assert (trade.amount, trade.status, trade.form["ItemName"]) == (150, "0", "50% off + 直播")
    # Unpaid: no outcome yet. The unencoded "50% off +" verifies in the answer's MAC.
    assert await provider.lookup("T20260302A", None) is None
    # An order whose form was never posted: ECPay does not know it (10200047), still open.
    assert await provider.lookup("NEVERPOSTED", None) is None


# -- the whole flow against the fake


async def test_pay_notify_lookup_and_refunds(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    trade_no = await paid_trade(fake, provider, merchant)
    trade = fake.trades["T20260302A"]
    [event] = merchant.events
    assert event.kind is EventKind.CAPTURED
    assert (event.reference, event.provider_ref) == ("T20260302A", trade_no)
    assert (event.amount, event.currency) == (15000, "TWD")

    looked_up = await provider.lookup("T20260302A", trade_no)
    assert looked_up is not None and looked_up.kind is EventKind.CAPTURED
    assert (looked_up.event_id, looked_up.amount) == (event.event_id, 15000)

    partial = await provider.refund(refund(trade_no, 5000))
    assert partial.status is RefundStatus.SUCCEEDED
    assert (trade.credit, trade.close_amount, trade.actions) == (TO_CLOSE, 100, [("R", 50)])

    fake.settle("T20260302A")  # the nightly close
    rest = await provider.refund(refund(trade_no, 10000))
    assert rest.status is RefundStatus.SUCCEEDED
    assert (trade.credit, trade.close_amount) == (CLOSED, 0)
    assert trade.actions == [("R", 50), ("R", 100)]
    with pytest.raises(ProviderError, match="exceeds"):
        await provider.refund(refund(trade_no, 100))


async def test_full_refund_after_the_close_is_r(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    trade_no = await paid_trade(fake, provider, merchant)
    fake.settle("T20260302A")
    result = await provider.refund(refund(trade_no, 15000))
    assert (result.status, result.message) == (RefundStatus.SUCCEEDED, "ECPay DoAction R")
    assert fake.trades["T20260302A"].actions == [("R", 150)]


async def test_full_refund_before_the_close_is_e_then_n(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    trade_no = await paid_trade(fake, provider, merchant)
    result = await provider.refund(refund(trade_no, 15000))
    assert result.status is RefundStatus.SUCCEEDED
    trade = fake.trades["T20260302A"]
    assert [fields["Action"] for path, fields in fake.requests if "DoAction" in path] == [
        "R",
        "E",
        "N",
    ]
    assert (trade.credit, trade.actions) == (ABANDONED, [("E", 150), ("N", 150)])


async def test_full_refund_resumes_after_failing_midway(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    """E went through, N met a 503: the retry finds the trade authorized and ends with N."""
    trade_no = await paid_trade(fake, provider, merchant)
    fake.fail_next(503, after=2)
    with pytest.raises(ProviderError) as caught:
        await provider.refund(refund(trade_no, 15000))
    assert caught.value.retryable
    assert fake.trades["T20260302A"].actions == [("E", 150)]
    result = await provider.refund(refund(trade_no, 15000))
    assert result.status is RefundStatus.SUCCEEDED
    assert fake.trades["T20260302A"].credit == ABANDONED


async def test_full_refund_of_an_authorized_trade_is_n(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    fake.auto_close = False  # the merchant turned the daily close off: trades stay authorized
    trade_no = await paid_trade(fake, provider, merchant)
    result = await provider.refund(refund(trade_no, 15000))
    assert result.status is RefundStatus.SUCCEEDED
    assert fake.trades["T20260302A"].actions == [("N", 150)]


async def test_refused_refund_is_provider_error(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    trade_no = await paid_trade(fake, provider, merchant)
    fake.refuse_next("帳戶餘額不足")
    with pytest.raises(ProviderError, match="帳戶餘額不足") as caught:
        await provider.refund(refund(trade_no, 5000))
    assert not caught.value.retryable
    assert fake.trades["T20260302A"].actions == []
    # A refund naming another trade is refused by ECPay too.
    with pytest.raises(ProviderError, match="TradeNo Error"):
        await provider.refund(refund("2603029999999999", 5000))


async def test_no_refund_during_the_nightly_close(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant, clock: Clock
) -> None:
    trade_no = await paid_trade(fake, provider, merchant)
    clock.now = datetime(2026, 3, 2, 12, 20, tzinfo=UTC).timestamp()  # 20:20 in Taipei
    with pytest.raises(ProviderError, match="20:15") as caught:
        await provider.refund(refund(trade_no, 5000))
    assert caught.value.retryable
    assert not [path for path, _ in fake.requests if "DoAction" in path]
    clock.now = datetime(2026, 3, 2, 12, 30, tzinfo=UTC).timestamp()
    assert (await provider.refund(refund(trade_no, 5000))).status is RefundStatus.SUCCEEDED


async def test_declined_payment_flow(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    await checked_out(provider, merchant)
    await fake.pay("T20260302A", code="10100248", message="拒絕交易")
    [event] = merchant.events
    assert (event.kind, event.message) == (EventKind.FAILED, "拒絕交易")
    looked_up = await provider.lookup("T20260302A", None)
    assert looked_up is not None and looked_up.kind is EventKind.FAILED
    assert (looked_up.amount, looked_up.provider_ref) == (15000, event.provider_ref)


async def test_simulated_payment_flow(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    await checked_out(provider, merchant)
    deliveries = await fake.pay("T20260302A", simulate=True)
    assert [d.acknowledged for d in deliveries] == [True]  # 1|OK, so ECPay stops sending
    assert merchant.events == []
    assert await provider.lookup("T20260302A", None) is None


async def test_ecpay_resends_until_it_reads_1_ok(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant
) -> None:
    merchant.wrong_replies = [b"OK", b'"1|OK"']
    await checked_out(provider, merchant)
    deliveries = await fake.pay("T20260302A")
    assert [d.acknowledged for d in deliveries] == [False, False, True]
    assert [d.form["RtnMsg"] for d in deliveries] == ["交易成功", "paid", "paid"]
    assert len({event.event_id for event in merchant.events}) == 1
    assert len(merchant.events) == 3


async def test_lookup_and_refund_errors(fake: EcpayFake, provider: EcpayProvider) -> None:
    fake.fail_next(503)
    with pytest.raises(ProviderError) as caught:
        await provider.lookup("T20260302A", None)
    assert caught.value.retryable
    fake.fail_next(400)
    with pytest.raises(ProviderError) as caught:
        await provider.refund(refund("2603021000020001", 5000))
    assert not caught.value.retryable
    fake.fail_next(502)
    with pytest.raises(ProviderError) as caught:
        await provider.refund(refund("2603021000020001", 5000))
    assert caught.value.retryable
    with pytest.raises(ProviderError, match="TradeNo"):
        await provider.refund(replace(refund("x", 5000), provider_ref=None))


async def test_partial_refund_with_unknown_outcome_is_not_retried(
    fake: EcpayFake, provider: EcpayProvider, merchant: Merchant, clock: Clock
) -> None:
    """DoAction has no idempotency key: a partial R whose answer is lost, or that met an HTTP
    500, may have been applied (here it was), so it is not marked retryable; reads are."""
    trade_no = await paid_trade(fake, provider, merchant)
    impatient = adapter(clock, fake.base_url, timeout_s=0.2)
    try:
        fake.stall_next(1.0)
        with pytest.raises(ProviderError, match="outcome is unknown") as caught:
            await impatient.refund(refund(trade_no, 5000))
        assert not caught.value.retryable
        assert fake.trades["T20260302A"].actions == [("R", 50)]
        fake.stall_next(1.0)
        with pytest.raises(ProviderError, match="ReadTimeout") as caught:
            await impatient.lookup("T20260302A", trade_no)
        assert caught.value.retryable
    finally:
        await impatient.aclose()
    fake.fail_next(500)
    with pytest.raises(ProviderError, match="outcome is unknown") as caught:
        await provider.refund(refund(trade_no, 5000))
    assert not caught.value.retryable
    fake.fail_next(500)
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        await provider.lookup("T20260302A", trade_no)
    assert caught.value.retryable


async def test_unreachable_ecpay_is_retryable(clock: Clock) -> None:
    provider = adapter(clock, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        with pytest.raises(ProviderError, match="could not be reached") as caught:
            await provider.lookup("T20260302A", None)
        assert caught.value.retryable
        with pytest.raises(ProviderError, match="could not be reached") as caught:
            await provider.refund(refund("2603021000020001", 5000))
        assert caught.value.retryable
    finally:
        await provider.aclose()


def test_credentials_stay_out_of_reprs() -> None:
    credentials = Credentials(MERCHANT_ID, HASH_KEY, HASH_IV)
    assert HASH_KEY not in repr(credentials) and HASH_IV not in repr(credentials)
    with pytest.raises(ValueError, match="HashKey"):
        EcpayProvider(merchant_id=MERCHANT_ID, hash_key="", hash_iv=HASH_IV)
