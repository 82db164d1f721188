//! [`SqliteStore`]: opening, the `Store` port and the maintenance methods.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mostro_core::machine::Effect;
use mostro_core::order::Order;
use mostro_core::ports::{
    Commit, DeadEffect, EffectId, Solver, Store, StoreError, User, View, ViewQuery,
};
use mostro_core::types::{BlockHeight, EventId, OrderId, PaymentHash, PubKey, Timestamp};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::config::SqliteConfig;
use crate::error::{OpenError, io_err};
use crate::readers::{Readers, open_reader};
use crate::schema;
use crate::sql;
use crate::writer::Writer;

/// The SQLite store. Cheap to share behind an `Arc`; see the crate docs for the design.
pub struct SqliteStore {
    path: PathBuf,
    readers: Arc<Readers>,
    writer: Writer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Rows and sizes, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Orders stored.
    pub orders: u64,
    /// Orders not in a terminal status.
    pub open_orders: u64,
    /// Outbox effects not yet done.
    pub pending_effects: u64,
    /// Outbox rows (pending and done).
    pub outbox_rows: u64,
    /// Replay-guard records.
    pub events: u64,
    /// Database size in bytes (pages times page size; the WAL not included).
    pub db_bytes: u64,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path` with default settings.
    ///
    /// Blocking: call it at start-up or inside `spawn_blocking`. The store itself must then be
    /// used inside a tokio runtime.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_with(path, SqliteConfig::default())
    }

    /// Opens the database at `path` with `config`. See [`SqliteStore::open`].
    pub fn open_with(
        path: impl AsRef<Path>,
        config: SqliteConfig,
    ) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref().to_path_buf();
        schema::ensure_file(&path)?;
        let err = |e: rusqlite::Error| OpenError::from_sqlite(&path, &e);
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(err)? {
            return Err(OpenError::ReadOnly {
                path,
                detail: "SQLite opened the file read-only".into(),
            });
        }
        conn.busy_timeout(config.busy_timeout).map_err(err)?;
        // Look before touching: a foreign or newer file is refused unmodified.
        schema::check_ownership(&conn, &path)?;
        // Only takes effect on a new, empty file (before WAL mode is set).
        if config.page_size.is_power_of_two() && (512..=65536).contains(&config.page_size) {
            conn.pragma_update(None, "page_size", config.page_size)
                .map_err(err)?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Other {
                path,
                detail: format!("cannot switch to WAL journal mode (got {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", config.synchronous.as_str())
            .map_err(err)?;
        conn.pragma_update(None, "trusted_schema", "OFF")
            .map_err(err)?;
        conn.pragma_update(None, "cache_size", -16_384)
            .map_err(err)?; // KiB
        conn.set_prepared_statement_cache_capacity(64);
        // Keep the WAL from staying huge after a burst.
        let _: i64 = conn
            .query_row("PRAGMA journal_size_limit = 67108864", [], |r| r.get(0))
            .map_err(err)?;
        if let Some(bytes) = config.max_size_bytes {
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(err)?;
            let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page.max(512);
            let _: i64 = conn
                .query_row(
                    &format!("PRAGMA max_page_count = {}", pages.max(1)),
                    [],
                    |r| r.get(0),
                )
                .map_err(err)?;
        }
        schema::migrate(&mut conn, &path)?;
        schema::check_indexes(&conn, &path);
        let mut readers = Vec::with_capacity(config.readers);
        for _ in 0..config.readers.max(1) {
            readers.push(open_reader(&path, &config).map_err(err)?);
        }
        let writer = Writer::spawn(conn, config.max_batch).map_err(|e| OpenError::Other {
            path: path.clone(),
            detail: format!("cannot start the writer thread: {e}"),
        })?;
        let readers = Readers::new(path.clone(), config, readers);
        Ok(SqliteStore {
            path,
            readers,
            writer,
        })
    }

    /// The database path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes replay-guard records older than `older_than`; returns how many. Events older than
    /// the transport accepts can go: a replay of one is refused before reaching the store.
    pub async fn prune_events(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let n = conn
                .prepare_cached(sql::PRUNE_EVENTS)?
                .execute([sql::ts(older_than)])?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    /// Deletes outbox effects completed before `older_than`; returns how many. Pending effects
    /// are never deleted.
    pub async fn prune_outbox(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let n = conn
                .prepare_cached(sql::PRUNE_OUTBOX)?
                .execute([sql::ts(older_than)])?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    /// Inserts many orders in one transaction without version checks (imports, benchmarks).
    /// All or nothing; fails with `Conflict` if an id already exists.
    pub async fn import_orders(&self, orders: Vec<Order>) -> Result<(), StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for o in &orders {
                sql::import_order(&tx, o)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every order (terminal or not) in which `key` is the maker's or the taker's trade key.
    pub async fn orders_by_trade_key(&self, key: &PubKey) -> Result<Vec<Order>, StoreError> {
        let key = *key;
        self.read(move |c| sql::orders_by_trade_key(c, &key)).await
    }

    /// Copies the WAL into the database file and truncates the WAL (`wal_checkpoint(TRUNCATE)`).
    /// SQLite checkpoints on its own; this is for backups and size measurements.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy != 0 {
                return Err(io_err("checkpoint could not complete: readers busy").into());
            }
            Ok(())
        })
        .await
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when the database is sound, otherwise a
    /// `Corrupt` error listing the first problems.
    pub async fn integrity_check(&self) -> Result<(), StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check(20)")?;
            let lines = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if lines.len() == 1 && lines.first().is_some_and(|l| l == "ok") {
                Ok(())
            } else {
                Err(crate::error::corrupt(format!("integrity check: {}", lines.join("; "))).into())
            }
        })
        .await
    }

    /// Row counts and size.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|c| {
            let count = |q: &str| -> Result<u64, sql::Fail> {
                let n: i64 = c.query_row(q, [], |r| r.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            Ok(StoreStats {
                orders: count("SELECT COUNT(*) FROM orders")?,
                open_orders: count("SELECT COUNT(*) FROM orders WHERE terminal = 0")?,
                pending_effects: count("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL")?,
                outbox_rows: count("SELECT COUNT(*) FROM outbox")?,
                events: count("SELECT COUNT(*) FROM events")?,
                db_bytes: count(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )?,
            })
        })
        .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, sql::Fail> + Send + 'static,
    {
        self.readers
            .read(move |c| f(c).map_err(StoreError::from))
            .await
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, sql::Fail> + Send + 'static,
    {
        self.writer
            .run(move |c| f(c).map_err(StoreError::from))
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EffectId>, StoreError> {
        self.writer.commit(commit).await
    }

    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.read(move |c| sql::order(c, id)).await
    }

    async fn order_by_hold_hash(&self, hash: &PaymentHash) -> Result<Option<Order>, StoreError> {
        let hash = *hash;
        self.read(move |c| sql::order_by_hold_hash(c, &hash)).await
    }

    async fn order_by_dispute(&self, dispute_id: OrderId) -> Result<Option<Order>, StoreError> {
        self.read(move |c| sql::order_by_dispute(c, dispute_id))
            .await
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        self.read(move |c| sql::due(c, now, limit)).await
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(sql::next_deadline).await
    }

    async fn htlc_expiring(&self, height: BlockHeight) -> Result<Vec<OrderId>, StoreError> {
        self.read(move |c| sql::htlc_expiring(c, height)).await
    }

    async fn open_orders_of(&self, identity: &PubKey) -> Result<Vec<Order>, StoreError> {
        let identity = *identity;
        self.read(move |c| sql::open_orders_of(c, &identity)).await
    }

    async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.read(sql::open_orders).await
    }

    async fn pending_effects(&self, limit: usize) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        self.read(move |c| sql::pending_effects(c, limit)).await
    }

    async fn pending_effects_after(
        &self,
        after: Option<EffectId>,
        limit: usize,
    ) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        self.read(move |c| sql::pending_effects_after(c, after, limit))
            .await
    }

    async fn effect_pending(&self, id: EffectId) -> Result<bool, StoreError> {
        self.read(move |c| sql::effect_pending(c, id)).await
    }

    async fn pending_effect_count(&self) -> Result<u64, StoreError> {
        self.read(sql::pending_count).await
    }

    async fn dead_effects(&self, limit: usize) -> Result<(Vec<DeadEffect>, u64), StoreError> {
        self.read(move |c| sql::dead_effects(c, limit)).await
    }

    async fn seen_event(&self, id: &EventId) -> Result<bool, StoreError> {
        let id = *id;
        self.read(move |c| sql::seen_event(c, &id)).await
    }

    async fn last_event_seen_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(sql::last_event_seen_at).await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            use rusqlite::OptionalExtension;
            Ok(c.prepare_cached(sql::SETTING)?
                .query_row([&key], |r| r.get::<_, String>(0))
                .optional()?)
        })
        .await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            c.prepare_cached(sql::SET_SETTING)?
                .execute([&key, &value])?;
            Ok(())
        })
        .await
    }

    async fn user(&self, identity: &PubKey) -> Result<Option<User>, StoreError> {
        let identity = *identity;
        self.read(move |c| sql::user(c, &identity)).await
    }

    async fn solver(&self, identity: &PubKey) -> Result<Option<Solver>, StoreError> {
        let identity = *identity;
        self.read(move |c| sql::solver(c, &identity)).await
    }

    async fn view(&self, q: &ViewQuery) -> Result<View, StoreError> {
        let q = q.clone();
        self.read(move |c| sql::view(c, &q)).await
    }

    async fn solvers(&self) -> Result<Vec<Solver>, StoreError> {
        self.read(sql::solvers).await
    }

    async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError> {
        let identity = *identity;
        self.write(move |c| sql::remove_solver(c, &identity)).await
    }
}
