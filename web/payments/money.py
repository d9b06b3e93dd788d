"""Amounts are integers in a currency's ISO 4217 minor units (USD 1999 = $19.99, TWD 15000 =
NT$150.00); nothing here ever holds money in a float."""

from __future__ import annotations

#: The currencies streamd sells in, with their ISO 4217 exponent.
MINOR_UNITS: dict[str, int] = {"USD": 2, "TWD": 2}
#: Amounts in these currencies must be whole major units: ECPay takes whole New Taiwan dollars
#: (Stripe charges two-decimal TWD but pays out whole dollars only: docs.stripe.com/currencies).
WHOLE_UNITS_ONLY = frozenset({"TWD"})
MAX_AMOUNT = 99_999_999  # minor units: Stripe's limit for one charge (8 digits)


class AmountError(ValueError):
    """An amount or currency that cannot be charged; the message is for the buyer."""


def check_amount(amount: int, currency: str) -> None:
    if currency not in MINOR_UNITS:
        raise AmountError(f"currency {currency!r} is not sold here (one of {sorted(MINOR_UNITS)})")
    if amount <= 0 or amount > MAX_AMOUNT:
        raise AmountError(f"amount must be between 1 and {MAX_AMOUNT} minor units")
    if currency in WHOLE_UNITS_ONLY and amount % 10 ** MINOR_UNITS[currency]:
        raise AmountError(f"{currency} amounts must be whole units (a multiple of 100 minor units)")


def major(amount: int, currency: str) -> str:
    """'19.99' for (1999, 'USD'): a decimal string, for providers and receipts."""
    exp = MINOR_UNITS[currency]
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


def display(amount: int, currency: str) -> str:
    """'US$19.99', 'NT$150' (whole TWD shown without decimals), for receipts and chat."""
    symbol = {"USD": "US$", "TWD": "NT$"}.get(currency, currency + " ")
    text = major(amount, currency)
    if currency in WHOLE_UNITS_ONLY:
        text = text.split(".")[0]
    return symbol + text
