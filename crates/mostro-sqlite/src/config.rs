//! Store settings.

use std::time::Duration;

/// When SQLite waits for the disk (`PRAGMA synchronous`, in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// The WAL is synced at checkpoints only. A commit survives a crash of the process, but the
    /// last commits before a power loss or kernel crash may be lost (never half applied). About
    /// ten times faster on slow disks.
    Normal,
    /// The WAL is synced at every transaction commit: an acknowledged commit survives a power
    /// loss too. The default, because commits record money-moving decisions (a settled hold
    /// invoice whose order is then forgotten is a loss). Group commit keeps concurrent
    /// throughput high.
    #[default]
    Full,
}

impl Synchronous {
    /// The pragma value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings of a [`crate::SqliteStore`].
///
/// The store reads no clock: every time it records (event seen, effect created or done, user
/// created, solver added) is the [`mostro_core::ports::Commit::at`] of the commit that wrote it.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Durability of commits (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// How long a connection waits for a lock held by another process (an operator's `sqlite3`
    /// shell, a backup) before failing. Default 5 s.
    pub busy_timeout: Duration,
    /// Number of read-only connections, i.e. of queries that run at the same time. Default 4.
    pub readers: usize,
    /// Most commits applied in one transaction when they queue up (group commit). Default 256.
    pub max_batch: usize,
    /// Refuse writes that would grow the database file beyond this many bytes (rounded down to
    /// whole pages): a full disk becomes a clean error before the file system fills up. `None`
    /// (the default) means no limit besides the disk.
    pub max_size_bytes: Option<u64>,
    /// Page size of a new database file, in bytes (a power of two from 512 to 65536; ignored
    /// for existing files). Default 8192: an order row is about 2.5 KB, so 4 KB pages would
    /// waste almost half of each page.
    pub page_size: u32,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
            max_batch: 256,
            max_size_bytes: None,
            page_size: 8192,
        }
    }
}
