//! Synchronous SQL: the statements, the commit, the queries and the row conversions. Everything
//! here runs on a blocking thread (the writer thread or a reader in `spawn_blocking`).

use mostro_core::machine::{Effect, UserUpdate};
use mostro_core::order::{HoldState, Order};
use mostro_core::ports::{
    Commit, DeadEffect, EffectId, OrderKey, Solver, StoreError, StoreErrorKind, User, View,
    ViewQuery,
};
use mostro_core::types::{BlockHeight, EventId, OrderId, PaymentHash, PubKey, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use crate::error::{corrupt, is_unique_violation, store_err};
use crate::rows::{EFFECT_FORMAT, ORDER_FORMAT, decode_effect, encode_effect};

/// `due(now, limit)`.
pub(crate) const DUE: &str = "SELECT id FROM orders WHERE deadline IS NOT NULL AND deadline <= ?1 \
     ORDER BY deadline, rowid LIMIT ?2";
/// `next_deadline()`.
pub(crate) const NEXT_DEADLINE: &str =
    "SELECT deadline FROM orders WHERE deadline IS NOT NULL ORDER BY deadline LIMIT 1";
/// `order(id)`.
pub(crate) const ORDER_BY_ID: &str =
    "SELECT id, version, body, body_format FROM orders WHERE id = ?1";
/// `order_by_hold_hash(hash)`: the most recently inserted order if several ever shared a hash.
pub(crate) const ORDER_BY_HOLD_HASH: &str = "SELECT id, version, body, body_format FROM orders \
     WHERE hold_hash = ?1 ORDER BY rowid DESC LIMIT 1";
/// `order_by_dispute(id)`.
pub(crate) const ORDER_BY_DISPUTE: &str = "SELECT id, version, body, body_format FROM orders \
     WHERE dispute_id = ?1 ORDER BY rowid DESC LIMIT 1";
/// `htlc_expiring(height)`.
pub(crate) const HTLC_EXPIRING: &str = "SELECT id FROM orders \
     WHERE htlc_expiry IS NOT NULL AND htlc_expiry <= ?1 ORDER BY htlc_expiry, rowid";
/// `open_orders_of(identity)`: two index searches; the second skips orders found by the first.
pub(crate) const OPEN_ORDERS_OF: &str = "SELECT id, version, body, body_format FROM orders \
     WHERE terminal = 0 AND maker_identity = ?1 \
     UNION ALL SELECT id, version, body, body_format FROM orders \
     WHERE terminal = 0 AND taker_identity = ?1 AND maker_identity <> ?1";
/// `open_orders()`.
pub(crate) const OPEN_ORDERS: &str =
    "SELECT id, version, body, body_format FROM orders WHERE terminal = 0 ORDER BY created_at";
/// `orders_by_trade_key(key)`.
pub(crate) const ORDERS_BY_TRADE_KEY: &str = "SELECT id, version, body, body_format FROM orders \
     WHERE maker_trade_key = ?1 OR taker_trade_key = ?1";
/// `pending_effects(limit)`.
pub(crate) const PENDING_EFFECTS: &str =
    "SELECT id, effect, effect_format FROM outbox WHERE done_at IS NULL ORDER BY id LIMIT ?1";
/// `pending_effects_after(after, limit)`: the retry cursor.
pub(crate) const PENDING_EFFECTS_AFTER: &str = "SELECT id, effect, effect_format FROM outbox WHERE done_at IS NULL AND id > ?1 ORDER BY id \
     LIMIT ?2";
/// `pending_effect_count()`: the outbox depth.
pub(crate) const PENDING_COUNT: &str = "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL";
/// `effect_pending(id)`.
pub(crate) const EFFECT_PENDING: &str = "SELECT 1 FROM outbox WHERE id = ?1 AND done_at IS NULL";
/// `dead_effects(limit)`: newest first.
pub(crate) const DEAD_EFFECTS: &str = "SELECT id, effect, dead_reason, effect_format FROM outbox \
     WHERE dead_reason IS NOT NULL ORDER BY id DESC LIMIT ?1";
/// `dead_effects(..)` total.
pub(crate) const DEAD_COUNT: &str = "SELECT COUNT(*) FROM outbox WHERE dead_reason IS NOT NULL";
/// `seen_event(id)`.
pub(crate) const SEEN_EVENT: &str = "SELECT 1 FROM events WHERE id = ?1";
/// `last_event_seen_at()`: the newest replay-guard row (the `seen_at` index's last entry).
pub(crate) const LAST_EVENT_SEEN_AT: &str = "SELECT max(seen_at) FROM events";
/// `setting(key)`.
pub(crate) const SETTING: &str = "SELECT value FROM settings WHERE key = ?1";
/// `set_setting(key, value)`.
pub(crate) const SET_SETTING: &str = "INSERT INTO settings (key, value) VALUES (?1, ?2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";
/// `user(identity)`.
pub(crate) const USER: &str = "SELECT identity, last_trade_index, reviews, rating_sum, min_rating, \
     max_rating, last_rating, created_at FROM users WHERE identity = ?1";
/// `solver(identity)`.
pub(crate) const SOLVER: &str = "SELECT can_write FROM solvers WHERE identity = ?1";
/// `solvers()`: the admin listing (a scan of a small table).
pub(crate) const SOLVERS: &str = "SELECT identity, can_write FROM solvers ORDER BY identity";
/// `remove_solver(identity)`.
pub(crate) const REMOVE_SOLVER: &str = "DELETE FROM solvers WHERE identity = ?1";
/// `prune_events(older_than)`.
pub(crate) const PRUNE_EVENTS: &str = "DELETE FROM events WHERE seen_at < ?1";
/// `prune_outbox(older_than)`.
/// Dead letters are kept for the operator.
pub(crate) const PRUNE_OUTBOX: &str =
    "DELETE FROM outbox WHERE done_at IS NOT NULL AND done_at < ?1 AND dead_reason IS NULL";

const INSERT_ORDER: &str = "INSERT INTO orders (id, version, body, body_format, status, terminal, \
     deadline, hold_hash, dispute_id, htlc_expiry, maker_identity, taker_identity, maker_trade_key, \
     taker_trade_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
     ?15)";
/// The stored version and extracted columns (in `COLUMNS` order) of an order.
const CURRENT_COLUMNS: &str = "SELECT version, status, terminal, deadline, hold_hash, dispute_id, \
     htlc_expiry, maker_identity, taker_identity, maker_trade_key, taker_trade_key, created_at \
     FROM orders WHERE id = ?1";
/// The shape of an order update (the real statement lists the columns that change).
#[cfg(test)]
const UPDATE_ORDER: &str = "UPDATE orders SET version = ?1, body = ?2, status = ?3, terminal = ?4, \
     deadline = ?5 WHERE id = ?6 AND version = ?7";
const INSERT_EVENT: &str = "INSERT INTO events (id, seen_at) VALUES (?1, ?2)";
const INSERT_EFFECT: &str =
    "INSERT INTO outbox (order_id, effect, effect_format, created_at) VALUES (?1, ?2, ?3, ?4)";
const MARK_DONE: &str = "UPDATE outbox SET done_at = ?2 WHERE id = ?1 AND done_at IS NULL";
const MARK_DEAD: &str =
    "UPDATE outbox SET done_at = ?2, dead_reason = ?3 WHERE id = ?1 AND done_at IS NULL";
const UPSERT_USER: &str = "INSERT INTO users (identity, last_trade_index, reviews, rating_sum, \
     min_rating, max_rating, last_rating, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (identity) DO UPDATE SET last_trade_index = excluded.last_trade_index, \
     reviews = excluded.reviews, rating_sum = excluded.rating_sum, \
     min_rating = excluded.min_rating, max_rating = excluded.max_rating, \
     last_rating = excluded.last_rating";
const UPSERT_SOLVER: &str = "INSERT INTO solvers (identity, can_write, updated_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT (identity) DO UPDATE SET \
     can_write = excluded.can_write, updated_at = excluded.updated_at";

/// Every statement of a periodic or per-request path, for the query-plan test (no full table
/// scan allowed).
#[cfg(test)]
pub(crate) const PLANNED: &[(&str, &str)] = &[
    ("due", DUE),
    ("next_deadline", NEXT_DEADLINE),
    ("order", ORDER_BY_ID),
    ("order_by_hold_hash", ORDER_BY_HOLD_HASH),
    ("order_by_dispute", ORDER_BY_DISPUTE),
    ("htlc_expiring", HTLC_EXPIRING),
    ("open_orders_of", OPEN_ORDERS_OF),
    ("open_orders", OPEN_ORDERS),
    ("orders_by_trade_key", ORDERS_BY_TRADE_KEY),
    ("pending_effects", PENDING_EFFECTS),
    ("pending_effects_after", PENDING_EFFECTS_AFTER),
    ("effect_pending", EFFECT_PENDING),
    ("pending_count", PENDING_COUNT),
    ("dead_effects", DEAD_EFFECTS),
    ("dead_count", DEAD_COUNT),
    ("mark_dead", MARK_DEAD),
    ("seen_event", SEEN_EVENT),
    ("last_event_seen_at", LAST_EVENT_SEEN_AT),
    ("setting", SETTING),
    ("user", USER),
    ("solver", SOLVER),
    ("prune_events", PRUNE_EVENTS),
    ("prune_outbox", PRUNE_OUTBOX),
    ("current_columns", CURRENT_COLUMNS),
    ("update_order", UPDATE_ORDER),
    ("mark_done", MARK_DONE),
];

/// SQLite integers are signed: saturate instead of wrapping (times and heights never get there).
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64, what: &str) -> R<u64> {
    Ok(u64::try_from(v).map_err(|_| corrupt(format!("negative {what}: {v}")))?)
}

/// A timestamp as stored (Unix seconds).
pub(crate) fn ts(t: Timestamp) -> i64 {
    int(t.0)
}

/// Decodes a stored 16-byte order id.
pub(crate) fn order_id(blob: &[u8]) -> R<OrderId> {
    let bytes: [u8; 16] = blob
        .try_into()
        .map_err(|_| corrupt(format!("order id of {} bytes", blob.len())))?;
    Ok(OrderId(uuid::Uuid::from_bytes(bytes)))
}

/// The columns extracted from an order besides `id`, `version` and `body`, in table order.
const COLUMNS: [&str; 11] = [
    "status",
    "terminal",
    "deadline",
    "hold_hash",
    "dispute_id",
    "htlc_expiry",
    "maker_identity",
    "taker_identity",
    "maker_trade_key",
    "taker_trade_key",
    "created_at",
];

/// An order as a row: the JSON body and the extracted columns.
pub(crate) struct OrderRow {
    id: OrderId,
    version: i64,
    body: String,
    columns: [Value; 11],
}

fn blob(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| Value::Blob(b.to_vec()))
}

fn integer(i: Option<i64>) -> Value {
    i.map_or(Value::Null, Value::Integer)
}

impl OrderRow {
    /// Extracts the columns and serializes the body.
    pub(crate) fn new(order: &Order) -> R<Self> {
        let body = crate::rows::encode_order(order).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Io,
                format!("order {}: cannot encode: {e}", order.id),
            )
        })?;
        let hold = order.hold.as_ref();
        let htlc_expiry = hold
            .filter(|h| h.state == HoldState::Accepted)
            .and_then(|h| h.htlc_expiry)
            .map(|BlockHeight(h)| i64::from(h));
        let taker = order.taker.as_ref();
        Ok(OrderRow {
            id: order.id,
            version: int(order.version),
            body,
            columns: [
                Value::Text(order.status.as_str().to_owned()),
                Value::Integer(i64::from(order.status.is_terminal())),
                integer(order.deadline.map(ts)),
                blob(hold.map(|h| &h.hash.0[..])),
                blob(order.dispute.as_ref().map(|d| &d.id.0.as_bytes()[..])),
                integer(htlc_expiry),
                Value::Blob(order.maker.identity.0.to_vec()),
                blob(taker.map(|t| &t.identity.0[..])),
                Value::Blob(order.maker.trade_key.0.to_vec()),
                blob(taker.map(|t| &t.trade_key.0[..])),
                Value::Integer(ts(order.created_at)),
            ],
        })
    }

    fn insert(&self, conn: &Connection) -> rusqlite::Result<usize> {
        let id = &self.id.0.as_bytes()[..];
        let mut params: Vec<&dyn ToSql> = vec![&id, &self.version, &self.body, &ORDER_FORMAT];
        params.extend(self.columns.iter().map(|v| v as &dyn ToSql));
        conn.prepare_cached(INSERT_ORDER)?.execute(&*params)
    }

    /// Replaces the stored row if it is at version `expected`; `false` when it is not (or
    /// missing). Only the indexed columns whose value changes are written, so an update
    /// touches only the indexes it must (SQLite rewrites every index of a column in `SET`).
    fn update(&self, conn: &Connection, expected: u64) -> R<bool> {
        let id = &self.id.0.as_bytes()[..];
        let expected = int(expected);
        let mut sql = String::from("UPDATE orders SET version = ?1, body = ?2, body_format = ?3");
        let mut params: Vec<&dyn ToSql> = vec![&self.version, &self.body, &ORDER_FORMAT];
        {
            let mut current = conn.prepare_cached(CURRENT_COLUMNS)?;
            let mut rows = current.query([id])?;
            let Some(row) = rows.next()? else {
                return Ok(false);
            };
            if row.get::<_, i64>(0)? != expected {
                return Ok(false);
            }
            for (i, (name, new)) in COLUMNS.iter().zip(&self.columns).enumerate() {
                let old: Value = row.get(i.saturating_add(1))?;
                if old != *new {
                    params.push(new);
                    sql.push_str(&format!(", {name} = ?{}", params.len()));
                }
            }
        }
        params.push(&id);
        params.push(&expected);
        sql.push_str(&format!(
            " WHERE id = ?{} AND version = ?{}",
            params.len().saturating_sub(1),
            params.len()
        ));
        let n = conn.prepare_cached(&sql)?.execute(&*params)?;
        Ok(n == 1)
    }
}

fn write_order(conn: &Connection, order: &Order, expected_version: Option<u64>) -> R<()> {
    let row = OrderRow::new(order)?;
    let id = order.id;
    match expected_version {
        None => match row.insert(conn) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Fail(StoreError::new(
                StoreErrorKind::Conflict,
                format!("order {id} already exists"),
            ))),
            Err(e) => Err(e.into()),
        },
        Some(v) => {
            if row.update(conn, v)? {
                Ok(())
            } else {
                Err(Fail(StoreError::new(
                    StoreErrorKind::Conflict,
                    format!("order {id} is not stored at version {v}"),
                )))
            }
        },
    }
}

/// Inserts orders without version checks (bulk import); fails with `Conflict` on an existing id.
pub(crate) fn import_order(conn: &Connection, order: &Order) -> R<()> {
    write_order(conn, order, None)
}

/// Applies one commit on `conn`, which must be inside a transaction or savepoint that the
/// caller rolls back on error.
pub(crate) fn apply_commit(conn: &Connection, c: &Commit) -> R<Vec<EffectId>> {
    let now = ts(c.at);
    if let Some(ev) = &c.event {
        match conn
            .prepare_cached(INSERT_EVENT)?
            .execute(params![&ev.0, now])
        {
            Ok(_) => {},
            Err(e) if is_unique_violation(&e) => {
                return Err(Fail(StoreError::new(
                    StoreErrorKind::Duplicate,
                    format!("event {} already processed", ev.to_hex()),
                )));
            },
            Err(e) => return Err(e.into()),
        }
    }
    for w in &c.orders {
        write_order(conn, &w.order, w.expected_version)?;
    }
    let mut ids = Vec::with_capacity(c.effects.len());
    if !c.effects.is_empty() {
        let mut insert = conn.prepare_cached(INSERT_EFFECT)?;
        for effect in &c.effects {
            let json = encode_effect(effect).map_err(|e| {
                StoreError::new(StoreErrorKind::Io, format!("cannot encode effect: {e}"))
            })?;
            let order = effect.order_id();
            insert.execute(params![
                order.as_ref().map(|o| o.0.as_bytes()),
                json,
                EFFECT_FORMAT,
                now
            ])?;
            ids.push(EffectId(uint(conn.last_insert_rowid(), "outbox id")?));
        }
    }
    if !c.done.is_empty() {
        let mut done = conn.prepare_cached(MARK_DONE)?;
        for id in &c.done {
            done.execute(params![int(id.0), now])?;
        }
    }
    if !c.dead.is_empty() {
        let mut dead = conn.prepare_cached(MARK_DEAD)?;
        for (id, reason) in &c.dead {
            dead.execute(params![int(id.0), now, reason])?;
        }
    }
    for u in &c.users {
        apply_user(conn, u, now)?;
    }
    if !c.solvers.is_empty() {
        let mut upsert = conn.prepare_cached(UPSERT_SOLVER)?;
        for s in &c.solvers {
            upsert.execute(params![&s.identity.0, s.write, now])?;
        }
    }
    Ok(ids)
}

fn apply_user(conn: &Connection, u: &UserUpdate, now: i64) -> R<()> {
    let identity = match u {
        UserUpdate::TradeIndex { identity, .. } | UserUpdate::Rating { identity, .. } => *identity,
    };
    let mut user = match user(conn, &identity)? {
        Some(user) => user,
        None => User {
            identity,
            created_at: Timestamp(uint(now, "time")?),
            ..User::default()
        },
    };
    user.apply(u);
    conn.prepare_cached(UPSERT_USER)?.execute(params![
        &user.identity.0,
        user.last_trade_index,
        int(user.reviews),
        int(user.rating_sum),
        user.min_rating,
        user.max_rating,
        user.last_rating,
        ts(user.created_at),
    ])?;
    Ok(())
}

/// Decodes a `(id, version, body, body_format)` row and checks the body agrees with the indexed
/// columns.
fn order_row(row: &Row<'_>) -> R<Order> {
    let id: Vec<u8> = row.get(0)?;
    let version: i64 = row.get(1)?;
    let body: String = row.get(2)?;
    let format: i64 = row.get(3)?;
    let id = order_id(&id)?;
    let order = crate::rows::decode_order(format, &body)
        .map_err(|e| corrupt(format!("order {id}: {e}")))?;
    if order.id != id || int(order.version) != version {
        return Err(Fail(corrupt(format!(
            "order {id}: body (id {}, version {}) disagrees with its row (version {version})",
            order.id, order.version
        ))));
    }
    Ok(order)
}

fn orders(conn: &Connection, sql: &str, param: &[u8]) -> R<Vec<Order>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([param])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(order_row(row)?);
    }
    Ok(out)
}

fn one_order(conn: &Connection, sql: &str, param: &[u8]) -> R<Option<Order>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([param])?;
    match rows.next()? {
        Some(row) => Ok(Some(order_row(row)?)),
        None => Ok(None),
    }
}

fn ids(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> R<Vec<OrderId>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        out.push(order_id(&id)?);
    }
    Ok(out)
}

pub(crate) fn order(conn: &Connection, id: OrderId) -> R<Option<Order>> {
    one_order(conn, ORDER_BY_ID, id.0.as_bytes())
}

pub(crate) fn order_by_hold_hash(conn: &Connection, hash: &PaymentHash) -> R<Option<Order>> {
    one_order(conn, ORDER_BY_HOLD_HASH, &hash.0)
}

pub(crate) fn order_by_dispute(conn: &Connection, dispute: OrderId) -> R<Option<Order>> {
    one_order(conn, ORDER_BY_DISPUTE, dispute.0.as_bytes())
}

pub(crate) fn due(conn: &Connection, now: Timestamp, limit: usize) -> R<Vec<OrderId>> {
    ids(
        conn,
        DUE,
        params![ts(now), int(u64::try_from(limit).unwrap_or(u64::MAX))],
    )
}

pub(crate) fn next_deadline(conn: &Connection) -> R<Option<Timestamp>> {
    let d: Option<i64> = conn
        .prepare_cached(NEXT_DEADLINE)?
        .query_row([], |r| r.get(0))
        .optional()?;
    d.map(|d| uint(d, "deadline").map(Timestamp)).transpose()
}

pub(crate) fn htlc_expiring(conn: &Connection, height: BlockHeight) -> R<Vec<OrderId>> {
    ids(conn, HTLC_EXPIRING, params![height.0])
}

pub(crate) fn open_orders_of(conn: &Connection, identity: &PubKey) -> R<Vec<Order>> {
    orders(conn, OPEN_ORDERS_OF, &identity.0)
}

pub(crate) fn open_orders(conn: &Connection) -> R<Vec<Order>> {
    let mut stmt = conn.prepare_cached(OPEN_ORDERS)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(order_row(row)?);
    }
    Ok(out)
}

pub(crate) fn orders_by_trade_key(conn: &Connection, key: &PubKey) -> R<Vec<Order>> {
    orders(conn, ORDERS_BY_TRADE_KEY, &key.0)
}

pub(crate) fn pending_effects(conn: &Connection, limit: usize) -> R<Vec<(EffectId, Effect)>> {
    let mut stmt = conn.prepare_cached(PENDING_EFFECTS)?;
    let mut rows = stmt.query([int(u64::try_from(limit).unwrap_or(u64::MAX))])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id = EffectId(uint(row.get(0)?, "outbox id")?);
        let json: String = row.get(1)?;
        let format: i64 = row.get(2)?;
        let effect = decode_effect(format, &json)
            .map_err(|e| corrupt(format!("outbox effect {}: {e}", id.0)))?;
        out.push((id, effect));
    }
    Ok(out)
}

pub(crate) fn pending_effects_after(
    conn: &Connection,
    after: Option<EffectId>,
    limit: usize,
) -> R<Vec<(EffectId, Effect)>> {
    let mut stmt = conn.prepare_cached(PENDING_EFFECTS_AFTER)?;
    let from = after.map_or(-1, |a| int(a.0));
    let mut rows = stmt.query(params![from, int(u64::try_from(limit).unwrap_or(u64::MAX))])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id = EffectId(uint(row.get(0)?, "outbox id")?);
        let json: String = row.get(1)?;
        let format: i64 = row.get(2)?;
        let effect = decode_effect(format, &json)
            .map_err(|e| corrupt(format!("outbox effect {}: {e}", id.0)))?;
        out.push((id, effect));
    }
    Ok(out)
}

pub(crate) fn pending_count(conn: &Connection) -> R<u64> {
    let n: i64 = conn
        .prepare_cached(PENDING_COUNT)?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn effect_pending(conn: &Connection, id: EffectId) -> R<bool> {
    Ok(conn.prepare_cached(EFFECT_PENDING)?.exists([int(id.0)])?)
}

pub(crate) fn dead_effects(conn: &Connection, limit: usize) -> R<(Vec<DeadEffect>, u64)> {
    // One read transaction: the list and the count come from the same snapshot.
    let tx = conn.unchecked_transaction()?;
    let conn: &Connection = &tx;
    let total: i64 = conn
        .prepare_cached(DEAD_COUNT)?
        .query_row([], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(DEAD_EFFECTS)?;
    let mut rows = stmt.query([int(u64::try_from(limit).unwrap_or(u64::MAX))])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id = EffectId(uint(row.get(0)?, "outbox id")?);
        let json: String = row.get(1)?;
        let reason: String = row.get(2)?;
        let format: i64 = row.get(3)?;
        let effect = decode_effect(format, &json)
            .map_err(|e| corrupt(format!("outbox effect {}: {e}", id.0)))?;
        out.push(DeadEffect { id, effect, reason });
    }
    drop(rows);
    drop(stmt);
    tx.finish()?;
    Ok((out, uint(total, "dead count")?))
}

pub(crate) fn seen_event(conn: &Connection, id: &EventId) -> R<bool> {
    Ok(conn.prepare_cached(SEEN_EVENT)?.exists([&id.0])?)
}

pub(crate) fn last_event_seen_at(conn: &Connection) -> R<Option<Timestamp>> {
    let t: Option<i64> = conn
        .prepare_cached(LAST_EVENT_SEEN_AT)?
        .query_row([], |r| r.get(0))?;
    Ok(t.map(|t| Timestamp(u64::try_from(t).unwrap_or(0))))
}

pub(crate) fn user(conn: &Connection, identity: &PubKey) -> R<Option<User>> {
    let mut stmt = conn.prepare_cached(USER)?;
    let mut rows = stmt.query([&identity.0])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let key: Vec<u8> = row.get(0)?;
    let key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(format!("user key of {} bytes", key.len())))?;
    Ok(Some(User {
        identity: PubKey(key),
        last_trade_index: row.get(1)?,
        reviews: uint(row.get(2)?, "review count")?,
        rating_sum: uint(row.get(3)?, "rating sum")?,
        min_rating: row.get(4)?,
        max_rating: row.get(5)?,
        last_rating: row.get(6)?,
        created_at: Timestamp(uint(row.get(7)?, "user creation time")?),
    }))
}

pub(crate) fn solvers(conn: &Connection) -> R<Vec<Solver>> {
    let mut stmt = conn.prepare_cached(SOLVERS)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let key: Vec<u8> = row.get(0)?;
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| corrupt(format!("solver key of {} bytes", key.len())))?;
        out.push(Solver {
            identity: PubKey(key),
            write: row.get(1)?,
        });
    }
    Ok(out)
}

pub(crate) fn remove_solver(conn: &Connection, identity: &PubKey) -> R<bool> {
    Ok(conn.prepare_cached(REMOVE_SOLVER)?.execute([&identity.0])? > 0)
}

pub(crate) fn solver(conn: &Connection, identity: &PubKey) -> R<Option<Solver>> {
    let write: Option<bool> = conn
        .prepare_cached(SOLVER)?
        .query_row([&identity.0], |r| r.get(0))
        .optional()?;
    Ok(write.map(|write| Solver {
        identity: *identity,
        write,
    }))
}

/// A failure inside this module: either SQLite's or one already classified.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) StoreError);

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail(store_err(&e))
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        f.0
    }
}

/// Result of this module.
pub(crate) type R<T> = Result<T, Fail>;

/// Every part of a request's view in one read transaction: one snapshot, one trip to a reader.
pub(crate) fn view(conn: &Connection, q: &ViewQuery) -> R<View> {
    let tx = conn.unchecked_transaction()?;
    let conn: &Connection = &tx;
    let mut v = View::default();
    if let Some(ev) = &q.event {
        v.seen = seen_event(conn, ev)?;
    }
    if let Some(k) = &q.solver_of {
        v.solver = solver(conn, k)?;
    }
    if let Some(k) = &q.user_of {
        v.user = user(conn, k)?;
    }
    v.order = match q.order {
        Some(OrderKey::Id(id)) => order(conn, id)?,
        Some(OrderKey::Dispute(id)) => order_by_dispute(conn, id)?,
        None => None,
    };
    if let Some(k) = &q.open_orders_of {
        v.open_orders = open_orders_of(conn, k)?;
    }
    tx.finish()?;
    Ok(v)
}
