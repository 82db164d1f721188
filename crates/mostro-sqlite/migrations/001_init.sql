-- Mostro store schema, version 1.
-- Append-only: never edit a released migration; add NNN_name.sql instead.
-- Keys, hashes and ids are BLOBs (32 bytes for keys and hashes, 16 for UUIDs);
-- times are Unix seconds; `body` holds the whole order as JSON, the other
-- columns are copies extracted from it for the indexes.

PRAGMA application_id = 1297306706; -- 0x4D53_5452, "MSTR"

-- One row per order. `terminal` is 1 when the status is terminal
-- (`Status::is_terminal`), so open-order queries use small partial indexes.
CREATE TABLE orders (
    id BLOB NOT NULL UNIQUE,
    status TEXT NOT NULL,
    terminal INTEGER NOT NULL CHECK (terminal IN (0, 1)),
    version INTEGER NOT NULL,
    deadline INTEGER,
    hold_hash BLOB,
    dispute_id BLOB,
    htlc_expiry INTEGER, -- only while the hold invoice is accepted
    maker_identity BLOB NOT NULL,
    taker_identity BLOB,
    maker_trade_key BLOB NOT NULL,
    taker_trade_key BLOB,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);

-- due(), next_deadline(): only orders that have a deadline.
CREATE INDEX orders_deadline ON orders (deadline) WHERE deadline IS NOT NULL;
-- order_by_hold_hash()
CREATE INDEX orders_hold_hash ON orders (hold_hash) WHERE hold_hash IS NOT NULL;
-- order_by_dispute()
CREATE INDEX orders_dispute ON orders (dispute_id) WHERE dispute_id IS NOT NULL;
-- htlc_expiring()
CREATE INDEX orders_htlc_expiry ON orders (htlc_expiry) WHERE htlc_expiry IS NOT NULL;
-- open_orders_of(): maker or taker identity of non-terminal orders.
CREATE INDEX orders_open_maker ON orders (maker_identity) WHERE terminal = 0;
CREATE INDEX orders_open_taker ON orders (taker_identity) WHERE terminal = 0;
-- open_orders()
CREATE INDEX orders_open ON orders (created_at) WHERE terminal = 0;
-- orders_by_trade_key(): any order, terminal or not.
CREATE INDEX orders_maker_trade_key ON orders (maker_trade_key);
CREATE INDEX orders_taker_trade_key ON orders (taker_trade_key) WHERE taker_trade_key IS NOT NULL;

-- Reputation and bookkeeping, one row per identity (`User`).
CREATE TABLE users (
    identity BLOB PRIMARY KEY NOT NULL,
    last_trade_index INTEGER NOT NULL,
    reviews INTEGER NOT NULL,
    rating_sum INTEGER NOT NULL,
    min_rating INTEGER NOT NULL,
    max_rating INTEGER NOT NULL,
    last_rating INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Registered dispute solvers.
CREATE TABLE solvers (
    identity BLOB PRIMARY KEY NOT NULL,
    can_write INTEGER NOT NULL CHECK (can_write IN (0, 1)),
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Replay guard: inbound event ids already processed, with when.
CREATE TABLE events (
    id BLOB PRIMARY KEY NOT NULL,
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_seen_at ON events (seen_at);

-- Effect outbox. AUTOINCREMENT: ids are never reused, so id order is commit order.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BLOB,
    effect TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
-- pending_effects(): only pending rows are in this index.
CREATE INDEX outbox_pending ON outbox (id) WHERE done_at IS NULL;
-- prune_outbox(): completed rows by completion time.
CREATE INDEX outbox_done ON outbox (done_at) WHERE done_at IS NOT NULL;
