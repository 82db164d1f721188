//! Store settings.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mostro_core::ports::Clock;
use mostro_core::types::Timestamp;

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
#[derive(Clone)]
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
    /// Clock for the times the store records (event seen, effect created/done, user created).
    /// Default: the system clock.
    pub clock: Arc<dyn Clock>,
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
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("readers", &self.readers)
            .field("max_batch", &self.max_batch)
            .field("max_size_bytes", &self.max_size_bytes)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// The system clock (seconds since the Unix epoch).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
}
