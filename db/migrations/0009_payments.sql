-- Payments (issue #18): prices on lives and videos, orders with a recorded timeline, provider
-- webhook events deduplicated by the provider's id, refunds, and a ledger of every capture
-- and refund with the platform's fee and the creator's share. Amounts are integers in the
-- currency's ISO 4217 minor units (web/payments/money.py).

-- The first schema's `payments` table was never written to; `orders` replaces it.
DROP TABLE payments;

ALTER TABLE lives
    ADD COLUMN price_amount bigint CHECK (price_amount > 0),
    ADD COLUMN price_currency text CHECK (price_currency ~ '^[A-Z]{3}$'),
    ADD CONSTRAINT lives_price_whole CHECK ((price_amount IS NULL) = (price_currency IS NULL));
ALTER TABLE videos
    ADD COLUMN price_amount bigint CHECK (price_amount > 0),
    ADD COLUMN price_currency text CHECK (price_currency ~ '^[A-Z]{3}$'),
    ADD CONSTRAINT videos_price_whole CHECK ((price_amount IS NULL) = (price_currency IS NULL));

CREATE TABLE orders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- What providers see as our id (ECPay's MerchantTradeNo: 20 alphanumerics at most).
    reference       text NOT NULL UNIQUE CHECK (reference ~ '^[A-Za-z0-9]{1,20}$'),
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- The seller: the live's or video's owner when the order was made (earnings go to them).
    creator_id      bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    item_type       text NOT NULL CHECK (item_type IN ('live_ticket', 'video', 'tip')),
    live_id         bigint REFERENCES lives (id) ON DELETE RESTRICT,
    -- A sold video may still be deleted by its creator: the order keeps its description.
    video_id        bigint REFERENCES videos (id) ON DELETE SET NULL,
    description     text NOT NULL CHECK (length(description) BETWEEN 1 AND 200),
    tip_message     text CHECK (length(tip_message) <= 200),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    provider        text NOT NULL CHECK (provider IN ('sandbox', 'stripe', 'ecpay')),
    -- The provider's checkout (Stripe's Checkout Session) and, once paid, its payment
    -- (Stripe's PaymentIntent, ECPay's TradeNo): refunds name the payment.
    checkout_ref    text CHECK (length(checkout_ref) <= 255),
    payment_ref     text CHECK (length(payment_ref) <= 255),
    status          text NOT NULL DEFAULT 'created'
                    CHECK (status IN ('created', 'pending', 'paid', 'partially_refunded',
                                      'refunded', 'failed', 'canceled', 'expired')),
    captured_amount bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0),
    refunded_amount bigint NOT NULL DEFAULT 0
                    CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
    -- Set when a provider reported something that does not match the order (another amount
    -- or currency): the order is never marked paid by such an event; an admin looks at it.
    review_reason   text CHECK (length(review_reason) <= 500),
    checkout_url    text CHECK (length(checkout_url) <= 2000),
    checkout_form   jsonb,
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    text,
    expires_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (item_type = 'video' OR (live_id IS NOT NULL AND video_id IS NULL)),
    CHECK (item_type <> 'video' OR live_id IS NULL),
    UNIQUE (user_id, idempotency_key),
    UNIQUE (provider, checkout_ref),
    UNIQUE (provider, payment_ref)
);
CREATE INDEX orders_user_idx ON orders (user_id, id DESC);
CREATE INDEX orders_creator_idx ON orders (creator_id, id DESC);
-- Entitlements are orders: "has this user a paid ticket for this live / this video".
CREATE INDEX orders_live_entitled_idx ON orders (live_id, user_id)
    WHERE status IN ('paid', 'partially_refunded') AND item_type = 'live_ticket';
CREATE INDEX orders_video_entitled_idx ON orders (video_id, user_id)
    WHERE status IN ('paid', 'partially_refunded') AND item_type = 'video';
-- The reconciler's and the expirer's work list.
CREATE INDEX orders_open_idx ON orders (created_at) WHERE status IN ('created', 'pending');
CREATE TRIGGER orders_updated_at BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Every state change and notable step of an order, with who or what caused it.
CREATE TABLE order_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (length(kind) <= 40),
    from_status text,
    to_status   text,
    actor       text NOT NULL CHECK (length(actor) <= 200),  -- "user:12", "stripe:evt_...", "reconciler"
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

-- Provider notifications, one row per provider event id: the unique key is what makes fifty
-- concurrent deliveries of one event have exactly one effect.
CREATE TABLE webhook_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text NOT NULL,
    event_id    text NOT NULL CHECK (length(event_id) <= 255),
    kind        text NOT NULL,
    reference   text,
    order_id    bigint REFERENCES orders (id) ON DELETE SET NULL,
    -- applied | duplicate_effect | review | deferred (a refund before its capture) |
    -- unknown_order | ignored
    outcome     text NOT NULL,
    event       jsonb NOT NULL,  -- the parsed ProviderEvent, replayable for 'deferred'
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, event_id)
);
CREATE INDEX webhook_events_deferred_idx ON webhook_events (order_id) WHERE outcome = 'deferred';

CREATE TABLE refunds (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES orders (id) ON DELETE RESTRICT,
    amount       bigint NOT NULL CHECK (amount > 0),
    currency     text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_ref text CHECK (length(provider_ref) <= 255),
    reason       text CHECK (length(reason) <= 500),
    message      text CHECK (length(message) <= 500),
    requested_by text NOT NULL,  -- "user:3" (admin or creator), or the provider's dashboard
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, provider_ref)
);
CREATE INDEX refunds_pending_idx ON refunds (created_at) WHERE status = 'pending';
CREATE TRIGGER refunds_updated_at BEFORE UPDATE ON refunds
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Money that moved: +amount on capture, -amount on refund, split into the platform's fee and
-- the creator's share (amount = fee + share on every row). Orders and ledger reconcile:
-- sum(amount) per order = captured_amount - refunded_amount.
CREATE TABLE ledger_entries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES orders (id) ON DELETE RESTRICT,
    refund_id     bigint UNIQUE REFERENCES refunds (id) ON DELETE RESTRICT,
    creator_id    bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    kind          text NOT NULL CHECK (kind IN ('capture', 'refund')),
    amount        bigint NOT NULL,
    platform_fee  bigint NOT NULL,
    creator_share bigint NOT NULL,
    currency      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (amount = platform_fee + creator_share),
    CHECK ((kind = 'capture') = (amount > 0)),
    CHECK ((kind = 'refund') = (refund_id IS NOT NULL))
);
CREATE UNIQUE INDEX ledger_one_capture_idx ON ledger_entries (order_id) WHERE kind = 'capture';
CREATE INDEX ledger_creator_idx ON ledger_entries (creator_id, currency);
