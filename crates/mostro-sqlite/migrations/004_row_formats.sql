-- Row formats of their own: every order body and outbox effect names the format it is written
-- in (see src/rows.rs). Every row written before this version is format 1.
ALTER TABLE orders ADD COLUMN body_format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN effect_format INTEGER NOT NULL DEFAULT 1;
