"""A fake of ECPay's All-in-One (全方位金流) payment API on loopback, for the ECPay adapter's tests.

It is a FAKE, written from ECPay's public documentation (developers.ecpay.com.tw, 全方位金流 API:
?p=2902 檢查碼機制, ?p=2862 產生訂單, ?p=2878 付款結果通知, ?p=2890 查詢訂單, ?p=9242 信用卡請退款)
and from answers of ECPay's stage server that others have published, not from ECPay's code. It is
a Starlette app served by uvicorn on 127.0.0.1 inside the test's event loop. Its CheckMacValue is
computed the way ECPay's PHP SDK does it (urlencode, then the .NET characters put back), not with
the adapter's function, so the two implementations check each other.

What it covers:

- ``POST /Cashier/AioCheckOut/V5``, as the buyer's browser posts the checkout form: the MAC
  (EncryptType=1, SHA256), MerchantID, MerchantTradeNo (1-20 letters or digits, never reused),
  MerchantTradeDate (``yyyy/MM/dd HH:mm:ss``), PaymentType=aio, a positive whole TotalAmount,
  TradeDesc (200) and ItemName (400), ReturnURL and the optional URLs (200), ChoosePayment,
  EncryptType=1. The trade is remembered with a 16-digit TradeNo.
- `pay`: the buyer pays (or is declined). Like ECPay, it POSTs the signed notification to the
  ReturnURL (form-encoded) and wants exactly ``1|OK`` back; otherwise it resends, 4 times at
  most (ECPay: every 5-15 minutes that day; here `retry_delay_s`), and RtnMsg is 交易成功 on the
  first delivery and "paid" on resends, as observed on ECPay. ``simulate=True`` is the back
  office's simulated payment: SimulatePaid=1, and the trade's status is left as it was.
- ``POST /Cashier/QueryTradeInfo/V5``: the MAC, MerchantID, TimeStamp within 3 minutes of the
  fake's clock; the answer's fields A to Z with values unencoded and its own CheckMacValue, as
  the stage server answers; TradeStatus 0, 1 or 10200095, and 10200047 for an unknown order.
- ``POST /CreditDetail/DoAction`` on the documented credit-card states: after payment a trade is
  to be closed (要關帳, the daily automatic close) or only authorized (已授權, ``auto_close=
  False``); `settle` is the nightly close (已關帳). C closes an authorized trade; R refunds part
  of a trade to be closed, or any part of a closed one; E cancels the close (back to
  authorized); N abandons an authorized trade. A full R before the close is refused: the docs
  route full refunds of trades to be closed through E then N. The answer is form-encoded
  ``MerchantID, MerchantTradeNo, TradeNo, RtnCode, RtnMsg`` (unsigned).
- Test hooks: `settle`, `fail_next` (the next requests answered with an HTTP status, as a broken
  front end would), `refuse_next` (the next DoAction refused), `stall_next` (an answer lost
  after the request was carried out), `requests` (what was asked).

What it does not cover: any other payment method or API (ATM/CVS/BARCODE numbers, installments,
periodic payments, QueryTrade/V2, invoices), PlatformID, the payment page itself (the checkout
answers a placeholder page), ECPay's real error codes and pages (a refused request is an HTTP
400 with a message; a refused DoAction is RtnCode=0 with a message), ReturnURL's port and
domain rules, rate limiting, the 20:15-20:30 window, the 21/90-day limits, UnionPay's immediate
close, and time: the nightly close happens only when a test calls `settle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote_plus, urlencode

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.helpers import free_port

MERCHANT_ID = "3002607"
# Not ECPay's published stage keys: this fake's own.
HASH_KEY = "fakeEcpayKey0001"
HASH_IV = "fakeEcpayIv00001"

TAIPEI = timezone(timedelta(hours=8))
_DATE = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}")
_TRADE_NO_CHARS = re.compile(r"[A-Za-z0-9]{1,20}")
_CHOOSE_PAYMENT = {"Credit", "ATM", "CVS", "BARCODE", "WebATM", "ApplePay", "TWQR", "ALL"}
# What PHP's urlencode escapes and .NET's UrlEncode does not (ECPay's PHP SDK, UrlService).
_DOTNET = {"%2d": "-", "%5f": "_", "%2e": ".", "%21": "!", "%2a": "*", "%28": "(", "%29": ")"}

# Credit-card trade states of ?p=9242.
AUTHORIZED = "authorized"  # 已授權
TO_CLOSE = "to_close"  # 要關帳
CLOSED = "closed"  # 已關帳
ABANDONED = "abandoned"  # 已放棄


def php_style_mac(params: Mapping[str, str], hash_key: str, hash_iv: str) -> str:
    """CheckMacValue the way ECPay's PHP SDK builds it: strcasecmp order, PHP's urlencode
    (Python's quote_plus keeps '~', PHP does not), lower case, the .NET characters restored."""
    items = sorted(
        ((k, v) for k, v in params.items() if k != "CheckMacValue"), key=lambda kv: kv[0].lower()
    )
    raw = "HashKey=" + hash_key + "".join(f"&{k}={v}" for k, v in items) + "&HashIV=" + hash_iv
    encoded = quote_plus(raw, safe="").replace("~", "%7E").lower()
    for escape, char in _DOTNET.items():
        encoded = encoded.replace(escape, char)
    return hashlib.sha256(encoded.encode()).hexdigest().upper()


@dataclass
class Delivery:
    """One POST of a notification to the ReturnURL and what came back."""

    attempt: int
    form: dict[str, str]
    status: int | None
    body: bytes
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status == 200 and self.body == b"1|OK"


@dataclass
class Trade:
    form: dict[str, str]  # the checkout form as received
    trade_no: str
    amount: int  # whole NT$
    trade_date: str
    status: str = "0"  # QueryTradeInfo's TradeStatus
    payment_date: str = ""
    payment_type: str = ""
    credit: str | None = None  # AUTHORIZED, TO_CLOSE, CLOSED, ABANDONED once paid by card
    close_amount: int = 0  # what the close takes (or took) from the card
    actions: list[tuple[str, int]] = field(default_factory=list)  # DoActions accepted
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.form["MerchantTradeNo"]


class _LoopServer(uvicorn.Server):
    """uvicorn inside the test's event loop: the test runner keeps its signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Served:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve(app: Starlette) -> Served:
    """``app`` served by uvicorn on a free loopback port, once it listens."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = _LoopServer(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    return Served(server, task, port)


class EcpayFake:
    def __init__(
        self,
        *,
        merchant_id: str = MERCHANT_ID,
        hash_key: str = HASH_KEY,
        hash_iv: str = HASH_IV,
        clock: Callable[[], float] = time.time,
        auto_close: bool = True,
        resends: int = 4,
        retry_delay_s: float = 0.01,
    ) -> None:
        self.merchant_id = merchant_id
        self.hash_key = hash_key
        self.hash_iv = hash_iv
        self.clock = clock
        self.auto_close = auto_close
        self.resends = resends
        self.retry_delay_s = retry_delay_s
        self.trades: dict[str, Trade] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._failures: list[int | None] = []
        self._refusals: list[str] = []
        self._stalls: list[float] = []
        self._serial = itertools.count(1)
        self._served: Served | None = None
        self.app = Starlette(
            routes=[
                Route("/Cashier/AioCheckOut/V5", self._checkout, methods=["POST"]),
                Route("/Cashier/QueryTradeInfo/V5", self._query, methods=["POST"]),
                Route("/CreditDetail/DoAction", self._do_action, methods=["POST"]),
            ]
        )

    # -- lifecycle and URLs

    async def start(self) -> None:
        self._served = await serve(self.app)

    async def stop(self) -> None:
        if self._served is not None:
            await self._served.stop()

    @property
    def base_url(self) -> str:
        assert self._served is not None, "start() first"
        return self._served.base_url

    @property
    def payment_url(self) -> str:
        return self.base_url + "/Cashier/AioCheckOut/V5"

    @property
    def query_url(self) -> str:
        return self.base_url + "/Cashier/QueryTradeInfo/V5"

    @property
    def refund_url(self) -> str:
        return self.base_url + "/CreditDetail/DoAction"

    # -- test hooks

    def sign(self, params: Mapping[str, str]) -> dict[str, str]:
        return {**params, "CheckMacValue": php_style_mac(params, self.hash_key, self.hash_iv)}

    def fail_next(self, status: int, times: int = 1, *, after: int = 0) -> None:
        """``after`` API requests from now are served, then the next ``times`` are answered
        ``status`` without being looked at."""
        self._failures.extend([None] * after + [status] * times)

    def refuse_next(self, message: str = "refused by the test") -> None:
        self._refusals.append(message)

    def stall_next(self, seconds: float) -> None:
        """The next QueryTradeInfo or DoAction is carried out, then answered ``seconds`` late
        (past the client's timeout: an answer lost on the way back)."""
        self._stalls.append(seconds)

    async def _late(self, response: Response) -> Response:
        if self._stalls:
            await asyncio.sleep(self._stalls.pop(0))
        return response

    def settle(self, reference: str) -> None:
        """The nightly close: a trade to be closed is closed."""
        trade = self.trades[reference]
        if trade.credit == TO_CLOSE:
            trade.credit = CLOSED

    def notification(
        self, trade: Trade, *, code: str, message: str, simulate: bool
    ) -> dict[str, str]:
        """The ReturnURL form of ?p=2878, signed."""
        return self.sign(
            {
                "CustomField1": "",
                "CustomField2": "",
                "CustomField3": "",
                "CustomField4": "",
                "MerchantID": self.merchant_id,
                "MerchantTradeNo": trade.reference,
                "PaymentDate": trade.payment_date or self._now(),
                "PaymentType": "Credit_CreditCard",
                "PaymentTypeChargeFee": str(max(1, trade.amount * 2 // 100)),
                "RtnCode": code,
                "RtnMsg": message,
                "SimulatePaid": "1" if simulate else "0",
                "StoreID": "",
                "TradeAmt": str(trade.amount),
                "TradeDate": trade.trade_date,
                "TradeNo": trade.trade_no,
            }
        )

    async def pay(
        self,
        reference: str,
        *,
        code: str = "1",
        message: str | None = None,
        simulate: bool = False,
    ) -> list[Delivery]:
        """The buyer pays (``code`` 1) or is declined (any other code), and ECPay notifies the
        ReturnURL until it is acknowledged: the deliveries, also kept on the trade."""
        trade = self.trades[reference]
        if not simulate:
            if code == "1":
                trade.status = "1"
                trade.payment_date = self._now()
                trade.payment_type = "Credit_CreditCard"
                trade.credit = TO_CLOSE if self.auto_close else AUTHORIZED
                trade.close_amount = trade.amount if self.auto_close else 0
            else:
                trade.status = "10200095"
        deliveries: list[Delivery] = []
        async with httpx.AsyncClient(timeout=5) as client:
            for attempt in range(1 + self.resends):
                if attempt:
                    await asyncio.sleep(self.retry_delay_s)
                text = message or ("交易成功" if attempt == 0 else "paid")
                form = self.notification(trade, code=code, message=text, simulate=simulate)
                delivery = await self._deliver(client, trade.form["ReturnURL"], attempt, form)
                deliveries.append(delivery)
                if delivery.acknowledged:
                    break
        trade.deliveries.extend(deliveries)
        return deliveries

    # -- the API

    async def _deliver(
        self, client: httpx.AsyncClient, url: str, attempt: int, form: dict[str, str]
    ) -> Delivery:
        try:
            response = await client.post(url, data=form)
        except httpx.HTTPError as exc:
            return Delivery(attempt, form, None, b"", error=repr(exc))
        return Delivery(attempt, form, response.status_code, response.content)

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), TAIPEI).strftime("%Y/%m/%d %H:%M:%S")

    async def _read(self, request: Request) -> dict[str, str] | Response:
        """The request's form once its MAC holds, or the error answer."""
        body = (await request.body()).decode()
        fields = dict(parse_qsl(body, keep_blank_values=True))
        self.requests.append((request.url.path, fields))
        failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return PlainTextResponse("fake failure", status_code=failure)
        expected = php_style_mac(fields, self.hash_key, self.hash_iv).encode()
        if not hmac.compare_digest(expected, fields.get("CheckMacValue", "").encode()):
            return PlainTextResponse("CheckMacValue Error", status_code=400)
        if fields.get("MerchantID") != self.merchant_id:
            return PlainTextResponse("MerchantID Error", status_code=400)
        return fields

    async def _checkout(self, request: Request) -> Response:
        fields = await self._read(request)
        if isinstance(fields, Response):
            return fields
        problem = self._checkout_problem(fields)
        if problem:
            return PlainTextResponse(problem, status_code=400)
        now = datetime.fromtimestamp(self.clock(), TAIPEI)
        trade_no = now.strftime("%y%m%d%H%M%S") + f"{next(self._serial) % 10000:04d}"
        reference = fields["MerchantTradeNo"]
        self.trades[reference] = Trade(
            form=fields,
            trade_no=trade_no,
            amount=int(fields["TotalAmount"]),
            trade_date=now.strftime("%Y/%m/%d %H:%M:%S"),
        )
        page = f"<html><body>ECPay (fake): pay {reference}, TradeNo {trade_no}</body></html>"
        return HTMLResponse(page)

    def _checkout_problem(self, fields: dict[str, str]) -> str | None:
        reference = fields.get("MerchantTradeNo", "")
        checks = [
            (bool(_TRADE_NO_CHARS.fullmatch(reference)), "MerchantTradeNo Error"),
            (reference not in self.trades, "MerchantTradeNo is duplicate"),
            (bool(_DATE.fullmatch(fields.get("MerchantTradeDate", ""))), "MerchantTradeDate Error"),
            (fields.get("PaymentType") == "aio", "PaymentType Error"),
            (fields.get("TotalAmount", "").isdigit(), "TotalAmount Error"),
            (fields.get("TotalAmount", "0").lstrip("0") != "", "TotalAmount Error"),
            (0 < len(fields.get("TradeDesc", "")) <= 200, "TradeDesc Error"),
            (0 < len(fields.get("ItemName", "")) <= 400, "ItemName Error"),
            (0 < len(fields.get("ReturnURL", "")) <= 200, "ReturnURL Error"),
            (fields.get("ChoosePayment") in _CHOOSE_PAYMENT, "ChoosePayment Error"),
            (fields.get("EncryptType") == "1", "EncryptType Error"),
        ]
        for name in ("ClientBackURL", "OrderResultURL"):
            checks.append((len(fields.get(name, "")) <= 200, f"{name} Error"))
        return next((message for ok, message in checks if not ok), None)

    async def _query(self, request: Request) -> Response:
        fields = await self._read(request)
        if isinstance(fields, Response):
            return fields
        stamp = fields.get("TimeStamp", "")
        if not stamp.isdigit() or abs(self.clock() - int(stamp)) > 180:
            return PlainTextResponse("TimeStamp Error", status_code=400)
        trade = self.trades.get(fields.get("MerchantTradeNo", ""))
        answer = {
            "HandlingCharge": "0",
            "ItemName": trade.form["ItemName"] if trade else "",
            "MerchantID": self.merchant_id,
            "MerchantTradeNo": fields.get("MerchantTradeNo", ""),
            "PaymentDate": trade.payment_date if trade else "",
            "PaymentType": trade.payment_type if trade else "",
            "PaymentTypeChargeFee": "0",
            "TradeAmt": str(trade.amount) if trade else "0",
            "TradeDate": trade.trade_date if trade else "",
            "TradeNo": trade.trade_no if trade else "",
            "TradeStatus": trade.status if trade else "10200047",
        }
        if trade:
            answer.update({f"CustomField{i}": "" for i in range(1, 5)} | {"StoreID": ""})
        signed = self.sign(answer)
        # Values unencoded, A to Z, the MAC last: what the stage server answers.
        text = "&".join(f"{k}={signed[k]}" for k in sorted(answer, key=str.lower))
        return await self._late(HTMLResponse(text + "&CheckMacValue=" + signed["CheckMacValue"]))

    async def _do_action(self, request: Request) -> Response:
        fields = await self._read(request)
        if isinstance(fields, Response):
            return fields
        trade = self.trades.get(fields.get("MerchantTradeNo", ""))
        action = fields.get("Action", "")
        amount = int(fields["TotalAmount"]) if fields.get("TotalAmount", "").isdigit() else 0
        if trade is None or trade.trade_no != fields.get("TradeNo"):
            problem: str | None = "TradeNo Error"
        elif self._refusals:
            problem = self._refusals.pop(0)
        else:
            problem = self._apply(trade, action, amount)
        answer = {
            "MerchantID": self.merchant_id,
            "MerchantTradeNo": fields.get("MerchantTradeNo", ""),
            "TradeNo": fields.get("TradeNo", ""),
            "RtnCode": "0" if problem else "1",
            "RtnMsg": problem or "Succeeded",
        }
        return await self._late(HTMLResponse(urlencode(answer)))

    def _apply(self, trade: Trade, action: str, amount: int) -> str | None:
        """One DoAction on the trade's state (?p=9242), or why it is refused."""
        if amount <= 0:
            return "TotalAmount Error"
        if action == "C" and trade.credit == AUTHORIZED and amount <= trade.amount:
            trade.credit, trade.close_amount = TO_CLOSE, amount
        elif action == "R" and trade.credit in (TO_CLOSE, CLOSED):
            if amount > trade.close_amount:
                return "refund exceeds the trade's amount"
            if trade.credit == TO_CLOSE and amount == trade.close_amount:
                return "a full refund before the close is E then N"
            trade.close_amount -= amount
        elif action == "E" and trade.credit == TO_CLOSE:
            trade.credit, trade.close_amount = AUTHORIZED, 0
        elif action == "N" and trade.credit == AUTHORIZED:
            trade.credit = ABANDONED
        else:
            return f"Action {action} is not allowed for a trade that is {trade.credit}"
        trade.actions.append((action, amount))
        return None
