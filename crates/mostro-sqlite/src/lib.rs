//! SQLite implementation of the Mostro [`Store`](mostro_core::ports::Store) port.
//!
//! # What is stored
//! - `orders`: one row per order. The whole [`Order`](mostro_core::Order) is kept as JSON in
//!   `body`; the columns the queries need (id, status, terminal flag, version, deadline, hold
//!   hash, dispute id, HTLC expiry while the hold is accepted, maker/taker identities and trade
//!   keys, creation time) are extracted from it on every write and indexed, mostly with partial
//!   indexes so that a million finished orders cost the periodic queries nothing.
//! - `users` (one row per identity, the [`User`](mostro_core::ports::User) fields), `solvers`,
//!   `events` (the replay guard, with the time each id was recorded) and `outbox` (effects,
//!   `INTEGER PRIMARY KEY AUTOINCREMENT` so ids are never reused and id order is commit order;
//!   a partial index holds only the pending ones). A dead letter (an effect that can never
//!   succeed) is a done row with a `dead_reason`; another partial index holds only those, and
//!   pruning keeps them.
//!
//! Keys, hashes and ids are BLOBs; times are Unix seconds. The layout is described with every
//! index in `docs/storage.md`.
//!
//! # Commits
//! [`Store::commit`](mostro_core::ports::Store::commit) is one SQLite transaction: replay-guard
//! insert (a known event id fails with `Duplicate`), every order write (insert when
//! `expected_version` is `None`, failing with `Conflict` if the id exists; otherwise
//! `UPDATE … WHERE id = ? AND version = ?`, `Conflict` when no row matched), outbox inserts,
//! completions, dead letters (only rows still pending), user updates through [`User::apply`](mostro_core::ports::User::apply) and solver
//! upserts. Any failure rolls the whole commit back.
//!
//! # Concurrency
//! The database runs in WAL mode. One dedicated thread owns the only writing connection and
//! receives commits over a channel, so the store never collides with itself ("database is
//! locked" cannot happen between its own connections; `busy_timeout` covers other processes such
//! as an operator's `sqlite3` shell). Commits that queue up while a transaction runs are applied
//! together in the next transaction, each in its own savepoint (group commit): one WAL sync for
//! the batch, while each commit still succeeds or fails alone. Queries run on a small pool of
//! read-only connections through `tokio::task::spawn_blocking`, concurrently with each other
//! and with the writer; the async runtime is never blocked.
//!
//! # Durability
//! [`SqliteConfig::synchronous`] defaults to [`Synchronous::Full`]: the WAL is synced before a
//! commit is acknowledged, so an acknowledged commit survives a power loss. The engine runs a
//! commit's effects (settle a hold invoice, pay the buyer) once the commit is acknowledged, so
//! losing the last commits after a power cut would leave the Lightning node ahead of the
//! database; the speed of `NORMAL` is not worth that, and group commit recovers most of it
//! under load. With [`Synchronous::Normal`] an acknowledged commit survives a crash of the
//! process (the data is in the OS page cache) but the last commits before a power loss or
//! kernel crash may be lost; never half applied in either mode.
//!
//! # Files and schema
//! The file is created with mode 0600 (it holds hold-invoice preimages); SQLite gives its `-wal`
//! and `-shm` files the same mode. Migrations are embedded (`migrations/NNN_name.sql`), append
//! only, and tracked in `PRAGMA user_version`; `PRAGMA application_id` marks the file as ours.
//! New files use 8 KiB pages ([`SqliteConfig::page_size`]).
//! A database written by a newer binary, one that belongs to another application, a file that
//! is not a database, a missing or read-only directory and a full disk are refused with an
//! [`OpenError`] that names the path.
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod error;
mod readers;
pub mod rows;
mod schema;
mod sql;
mod store;
pub mod tools;
mod writer;

pub use config::{SqliteConfig, Synchronous};
pub use error::OpenError;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use store::{SqliteStore, StoreStats};

#[cfg(test)]
mod plan_tests;
