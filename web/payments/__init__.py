"""Payments: orders, provider adapters (sandbox, Stripe, ECPay), webhooks, refunds, a ledger.

A newcomer's path through one purchase: `web.payments.orders_api` (POST /api/orders) ->
a provider's `create_checkout` (`provider.py` is the contract) -> the buyer pays at the
provider -> its webhook (`web.payments.webhooks`) is verified, deduplicated and applied to the
order by `db.orders` -> the ledger gets a capture row and the buyer an entitlement.
"""
