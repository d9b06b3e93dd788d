-- Tips (issue #18) are chat messages too: shown to everyone in the room, highlighted with their
-- amount. One message per tip order: a capture delivered twice never posts twice.
ALTER TABLE chat_messages
    ADD COLUMN tip jsonb,  -- {"amount": minor units, "currency": "USD", "display": "US$5.00"}
    ADD COLUMN order_id bigint UNIQUE REFERENCES orders (id) ON DELETE SET NULL,
    ADD CONSTRAINT chat_messages_tip_order CHECK ((tip IS NULL) = (order_id IS NULL));
