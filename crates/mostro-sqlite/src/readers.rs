//! A small pool of read-only connections. In WAL mode readers never wait for the writer nor
//! for each other; each query runs on a blocking thread (`spawn_blocking`) so the async runtime
//! is never blocked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mostro_core::ports::StoreError;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::config::SqliteConfig;
use crate::error::{io_err, store_err};

pub(crate) struct Readers {
    path: PathBuf,
    config: SqliteConfig,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// Opens one read-only connection.
pub(crate) fn open_reader(path: &Path, config: &SqliteConfig) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(config.busy_timeout)?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    conn.pragma_update(None, "cache_size", -8_192)?; // KiB
    Ok(conn)
}

impl Readers {
    pub(crate) fn new(path: PathBuf, config: SqliteConfig, conns: Vec<Connection>) -> Arc<Self> {
        let permits = Arc::new(Semaphore::new(config.readers.max(1)));
        Arc::new(Readers {
            path,
            config,
            idle: Mutex::new(conns),
            permits,
        })
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let popped = match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        match popped {
            Some(c) => Ok(c),
            // A connection was lost (its task was aborted): open a replacement.
            None => open_reader(&self.path, &self.config).map_err(|e| store_err(&e)),
        }
    }

    fn give_back(&self, conn: Connection) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }

    /// Runs a read on a pooled connection, on a blocking thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| io_err("the sqlite store must be used inside a tokio runtime"))?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io_err("reader pool closed"))?;
        let pool = Arc::clone(self);
        runtime
            .spawn_blocking(move || {
                let _permit = permit;
                let conn = pool.take()?;
                let result = f(&conn);
                pool.give_back(conn);
                result
            })
            .await
            .map_err(|e| io_err(format!("sqlite reader task failed: {e}")))?
    }
}
