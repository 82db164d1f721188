//! Offline and online maintenance on a database file, for `mostrod db`: an online backup
//! (SQLite's backup API, safe while the daemon writes), an integrity and schema check, and row
//! counts. Each opens its own read-only connection; none migrates or modifies the source.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::OpenError;
use crate::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// The tables of the current schema, in the order `stats` reports them.
pub const TABLES: &[&str] = &["orders", "outbox", "events", "users", "solvers", "settings"];

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// `PRAGMA integrity_check` lines (`["ok"]` when sound).
    pub integrity: Vec<String>,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// The newest version this binary knows.
    pub supported_version: i64,
    /// Whether `PRAGMA application_id` marks the file as ours.
    pub ours: bool,
}

impl CheckReport {
    /// Sound, ours, and a schema this binary can open.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.ours
            && self.integrity == ["ok"]
            && (1..=self.supported_version).contains(&self.schema_version)
    }
}

/// What [`table_stats`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStats {
    /// Rows per table of [`TABLES`] that exists in the file.
    pub rows: Vec<(String, u64)>,
    /// Size of the database file, bytes.
    pub file_bytes: u64,
    /// Size of its `-wal` file, bytes (0 when there is none).
    pub wal_bytes: u64,
}

fn other(path: &Path, detail: impl std::fmt::Display) -> OpenError {
    OpenError::Other {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn open_read_only(path: &Path) -> Result<Connection, OpenError> {
    if !path.is_file() {
        return Err(other(path, "no such database file"));
    }
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| OpenError::from_sqlite(path, &e))?;
    c.busy_timeout(Duration::from_secs(5))
        .map_err(|e| OpenError::from_sqlite(path, &e))?;
    Ok(c)
}

/// Copies the database at `src` into a new file `dst` (mode 0600; refused when it exists) with
/// SQLite's online backup API: a consistent snapshot even while another connection writes.
/// Returns the number of pages copied.
pub fn backup(src: &Path, dst: &Path) -> Result<u64, OpenError> {
    let from = open_read_only(src)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(dst)
        .map_err(|e| other(dst, format!("cannot create the backup file: {e}")))?;
    let result = (|| {
        let mut to = Connection::open(dst).map_err(|e| OpenError::from_sqlite(dst, &e))?;
        let pages = {
            let b = rusqlite::backup::Backup::new(&from, &mut to)
                .map_err(|e| OpenError::from_sqlite(dst, &e))?;
            b.run_to_completion(256, Duration::from_millis(5), None)
                .map_err(|e| OpenError::from_sqlite(dst, &e))?;
            b.progress().pagecount
        };
        // The copy is a self-contained file: no WAL beside it.
        let _: String = to
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(|e| OpenError::from_sqlite(dst, &e))?;
        Ok(u64::try_from(pages).unwrap_or(0))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// `PRAGMA integrity_check`, the schema version and the application id of the file at `path`.
pub fn check(path: &Path) -> Result<CheckReport, OpenError> {
    let c = open_read_only(path)?;
    let e = |e: rusqlite::Error| OpenError::from_sqlite(path, &e);
    let app: i64 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(e)?;
    let schema_version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(e)?;
    let mut stmt = c.prepare("PRAGMA integrity_check(20)").map_err(e)?;
    let integrity = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(e)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(e)?;
    Ok(CheckReport {
        integrity,
        schema_version,
        supported_version: SCHEMA_VERSION,
        ours: app == APPLICATION_ID,
    })
}

/// Row counts per table and the file sizes of the database at `path`.
pub fn table_stats(path: &Path) -> Result<TableStats, OpenError> {
    let c = open_read_only(path)?;
    let e = |e: rusqlite::Error| OpenError::from_sqlite(path, &e);
    let mut rows = Vec::new();
    for t in TABLES {
        let exists: bool = c
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [t],
                |r| r.get(0),
            )
            .map_err(e)?;
        if exists {
            let n: i64 = c
                .query_row(&format!("SELECT COUNT(*) FROM \"{t}\""), [], |r| r.get(0))
                .map_err(e)?;
            rows.push(((*t).to_owned(), u64::try_from(n).unwrap_or(0)));
        }
    }
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = PathBuf::from(path);
    wal.as_mut_os_string().push("-wal");
    Ok(TableStats {
        rows,
        file_bytes: size(path),
        wal_bytes: size(&wal),
    })
}
