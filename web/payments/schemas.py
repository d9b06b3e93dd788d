"""Bodies of the payments API (`web.payments.orders_api`), shared with the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, Field, model_validator

from web.payments.money import display
from web.schemas import Amount, Body, Currency, Cursor, Limit, Query, Text

ItemType = Literal["live_ticket", "video", "tip"]
OrderStatus = Literal[
    "created", "pending", "paid", "partially_refunded", "refunded", "failed", "canceled",
    "expired",
]  # fmt: skip
ProviderName = Literal["sandbox", "stripe", "ecpay"]
TipMessage = Annotated[Text, Field(min_length=1, max_length=200)]
Reason = Annotated[Text, Field(min_length=1, max_length=500)]


class ItemIn(Body):
    type: ItemType
    live_id: int | None = Field(default=None, ge=1, description="live_ticket and tip")
    video_id: int | None = Field(default=None, ge=1, description="video")

    @model_validator(mode="after")
    def _one_target(self) -> ItemIn:
        if self.type == "video" and (self.video_id is None or self.live_id is not None):
            raise ValueError("a video item names video_id (and no live_id)")
        if self.type != "video" and (self.live_id is None or self.video_id is not None):
            raise ValueError(f"a {self.type} item names live_id (and no video_id)")
        return self


class OrderCreateIn(Body):
    item: ItemIn
    amount: Amount | None = Field(
        default=None, description="tips only (the price of tickets and videos is the seller's)"
    )
    currency: Currency
    provider: ProviderName
    message: TipMessage | None = Field(default=None, description="tips only: shown in chat")

    @model_validator(mode="after")
    def _tip_fields(self) -> OrderCreateIn:
        if self.item.type == "tip" and self.amount is None:
            raise ValueError("a tip names its amount")
        if self.item.type != "tip" and (self.amount is not None or self.message is not None):
            raise ValueError("amount and message are for tips only")
        return self


class CheckoutOut(BaseModel):
    url: str
    method: Literal["GET", "POST"] = Field(
        description="GET: send the browser to url; POST: submit form to url (ECPay)"
    )
    form: dict[str, str] | None


class OrderOut(BaseModel):
    id: int
    reference: str = Field(description="what the provider shows as the order number")
    status: OrderStatus
    item_type: ItemType
    live_id: int | None
    video_id: int | None
    description: str
    tip_message: str | None
    amount: int
    currency: str
    amount_display: str
    provider: ProviderName
    captured_amount: int
    refunded_amount: int
    user_id: int = Field(description="the buyer")
    creator_id: int = Field(description="the seller")
    review_reason: str | None = Field(
        description="a provider report that did not match the order (admins and the seller)"
    )
    checkout: CheckoutOut | None = Field(description="the buyer's checkout while it is open")
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record, *, viewer_id: int, is_admin: bool) -> OrderOut:
        return cls(**_order_fields(row, viewer_id=viewer_id, is_admin=is_admin))


def _order_fields(row: asyncpg.Record, *, viewer_id: int, is_admin: bool) -> dict[str, Any]:
    seller_view = is_admin or viewer_id == row["creator_id"]
    checkout = None
    if (
        row["status"] in ("created", "pending")
        and viewer_id == row["user_id"]
        and row["checkout_url"]
    ):
        form = row["checkout_form"]
        checkout = CheckoutOut(
            url=row["checkout_url"], method="POST" if form is not None else "GET",
            form=_json_dict(form),
        )  # fmt: skip
    return {
        "id": row["id"], "reference": row["reference"], "status": row["status"],
        "item_type": row["item_type"], "live_id": row["live_id"], "video_id": row["video_id"],
        "description": row["description"], "tip_message": row["tip_message"],
        "amount": row["amount"], "currency": row["currency"],
        "amount_display": display(int(row["amount"]), str(row["currency"])),
        "provider": row["provider"], "captured_amount": row["captured_amount"],
        "refunded_amount": row["refunded_amount"], "user_id": row["user_id"],
        "creator_id": row["creator_id"],
        "review_reason": row["review_reason"] if seller_view else None,
        "checkout": checkout, "expires_at": row["expires_at"], "paid_at": row["paid_at"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }  # fmt: skip


def _json_dict(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    data = json.loads(value) if isinstance(value, str) else value
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


class OrderEventOut(BaseModel):
    kind: str = Field(description="created, checkout, captured, failed, refunded, flagged, ...")
    from_status: OrderStatus | None
    to_status: OrderStatus | None
    actor: str = Field(description='"user:12", "sandbox:<event id>", "reconciler", ...')
    detail: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> OrderEventOut:
        detail = row["detail"]
        return cls(
            kind=row["kind"], from_status=row["from_status"], to_status=row["to_status"],
            actor=row["actor"], created_at=row["created_at"],
            detail=json.loads(detail) if isinstance(detail, str) else dict(detail),
        )  # fmt: skip


class RefundOut(BaseModel):
    id: int
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed", "unknown"] = Field(
        description="unknown: the provider's answer was lost; held for review, never resent"
    )
    reason: str | None
    message: str | None = Field(description="the provider's answer when it failed")
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RefundOut:
        return cls(
            id=row["id"], amount=row["amount"], currency=row["currency"], status=row["status"],
            reason=row["reason"], message=row["message"], created_at=row["created_at"],
        )  # fmt: skip


class OrderDetailOut(OrderOut):
    buyer: str | None = Field(description="the buyer's username (the seller and admins)")
    events: list[OrderEventOut]
    refunds: list[RefundOut]
    refundable: int = Field(description="what can still be refunded (minor units)")
    can_refund: bool = Field(description="whether the caller may refund this order now")
    refund_deadline: datetime | None = Field(
        description="until when the seller may refund (admins: any time)"
    )

    @classmethod
    def build(
        cls, row: asyncpg.Record, *, viewer_id: int, is_admin: bool, buyer: str | None,
        events: Sequence[asyncpg.Record], refunds: Sequence[asyncpg.Record], refundable: int,
        can_refund: bool, refund_deadline: datetime | None,
    ) -> OrderDetailOut:  # fmt: skip
        return cls(
            **_order_fields(row, viewer_id=viewer_id, is_admin=is_admin),
            buyer=buyer,
            events=[OrderEventOut.from_row(e) for e in events],
            refunds=[RefundOut.from_row(r) for r in refunds],
            refundable=refundable,
            can_refund=can_refund,
            refund_deadline=refund_deadline,
        )


class OrderCreatedOut(BaseModel):
    order: OrderOut
    checkout: CheckoutOut | None = Field(
        description="where to send the buyer; null when the order is no longer open"
    )


class OrderListQuery(Query):
    role: Literal["buyer", "seller", "all"] = Field(
        default="buyer", description="my purchases, my sales, or every order (admins)"
    )
    status: OrderStatus | None = None
    review: bool = Field(default=False, description="only orders flagged for review")
    cursor: Cursor | None = None
    limit: Limit = 20


class OrderListOut(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class RefundIn(Body):
    amount: Amount | None = Field(default=None, description="default: all that is left")
    reason: Reason | None = None


class EarningsRowOut(BaseModel):
    currency: str
    gross: int = Field(description="captured (minor units)")
    refunded: int
    platform_fees: int = Field(description="the platform's fee, net of refunded fees")
    net: int = Field(description="the creator's share: gross - refunded - platform_fees")
    sales: int = Field(description="paid orders")


class EarningsOut(BaseModel):
    fee_bps: int = Field(description="the platform's fee in basis points (1000 = 10%)")
    items: list[EarningsRowOut]


class ProviderOut(BaseModel):
    name: ProviderName
    currencies: list[str]


class CurrencyOut(BaseModel):
    code: str
    minor_units: int = Field(description="decimal places of the minor unit (2: cents)")
    whole_units_only: bool = Field(description="amounts must be whole major units (TWD)")
    tip_minimum: int = Field(description="the smallest tip (minor units)")


class PaymentsConfigOut(BaseModel):
    providers: list[ProviderOut] = Field(description="what a buyer may choose, in order")
    currencies: list[CurrencyOut]
    fee_bps: int
    refund_window_seconds: int = Field(description="how long a seller may refund a sale")
    order_ttl_seconds: int = Field(description="how long a checkout stays open")
