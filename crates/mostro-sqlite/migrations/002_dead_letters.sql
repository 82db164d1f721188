-- Dead letters: outbox effects that can never succeed (an invalid recipient key, an encryption
-- or size failure). They are marked done (never pending again) and keep the reason.
ALTER TABLE outbox ADD COLUMN dead_reason TEXT;
-- dead_effects(): newest first; only dead rows are in this index.
CREATE INDEX outbox_dead ON outbox (id) WHERE dead_reason IS NOT NULL;
