-- Tips (issue #18) are chat messages too: shown to everyone in the room, highlighted with their
-- amount. One message per tip order: a capture delivered twice never posts twice.
ALTER TABLE chat_messages
    ADD COLUMN tip jsonb,  -- {"amount": minor units, "currency": "USD", "display": "US$5.00"}
    ADD COLUMN order_id bigint UNIQUE REFERENCES orders (id) ON DELETE SET NULL,
    ADD CONSTRAINT chat_messages_tip_order CHECK ((tip IS NULL) = (order_id IS NULL));

-- A refund whose outcome the provider did not tell (an answer lost after the request was sent,
-- to a provider without idempotency keys: ECPay): it stays reserved against the capture, is
-- never sent again, and its order is flagged for someone to check the provider's back office.
ALTER TABLE refunds DROP CONSTRAINT refunds_status_check,
    ADD CONSTRAINT refunds_status_check
        CHECK (status IN ('pending', 'succeeded', 'failed', 'unknown'));
