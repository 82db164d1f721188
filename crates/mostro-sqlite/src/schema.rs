//! Creating the file, checking whose database it is, and the embedded migrations.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use tracing::{info, warn};

use crate::error::OpenError;

/// `PRAGMA application_id` of our databases ("MSTR").
pub const APPLICATION_ID: i64 = 0x4D53_5452;

/// The migrations, in order; migration `i` (0-based) brings the schema to version `i + 1`.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/001_init.sql"),
    include_str!("../migrations/002_dead_letters.sql"),
    include_str!("../migrations/003_settings.sql"),
    include_str!("../migrations/004_row_formats.sql"),
];

/// The schema version this binary writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 4;

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// Tables every version of our schema has.
const OUR_TABLES: &[&str] = &["events", "orders", "outbox", "solvers", "users"];

/// Makes sure the database file exists, creating it with mode 0600 (it holds preimages), and
/// that we can write it. Never truncates an existing file.
pub(crate) fn ensure_file(path: &Path) -> Result<(), OpenError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {},
        Ok(_) => {
            return Err(OpenError::NotADirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OpenError::MissingDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        },
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(OpenError::NotADirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        },
        Err(e) => return Err(OpenError::from_io(path, "cannot inspect the directory", &e)),
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| OpenError::from_io(path, "cannot open the file for writing", &e))?;
            warn_if_readable_by_others(path, &m);
            Ok(())
        },
        Ok(_) => Err(OpenError::Other {
            path: path.to_path_buf(),
            detail: "not a regular file".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(path),
        Err(e) => Err(OpenError::from_io(path, "cannot inspect the file", &e)),
    }
}

fn create_private(path: &Path) -> Result<(), OpenError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => {
            info!(path = %path.display(), "created a new database file");
            Ok(())
        },
        // Created by someone else meanwhile: fine, it is checked like any existing file.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OpenError::from_io(path, "cannot create the file", &e)),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, m: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "database file is accessible to other users; it holds hold-invoice preimages (chmod 600)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path, _m: &std::fs::Metadata) {}

/// What the file holds before we touch it.
struct Found {
    application_id: i64,
    user_version: i64,
    objects: Vec<String>,
}

fn inspect(conn: &Connection) -> rusqlite::Result<Found> {
    let application_id = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let user_version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type DESC, name",
    )?;
    let objects = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Found {
        application_id,
        user_version,
        objects,
    })
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len().saturating_sub(SHOWN)));
    }
    s
}

/// Refuses databases that are not ours or too new, without modifying the file.
pub(crate) fn check_ownership(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let found = inspect(conn).map_err(|e| OpenError::from_sqlite(path, &e))?;
    let path_buf = path.to_path_buf();
    if found.application_id != 0 && found.application_id != APPLICATION_ID {
        return Err(OpenError::ForeignSchema {
            path: path_buf,
            detail: format!(
                "application_id is {:#x}, ours is {APPLICATION_ID:#x}",
                found.application_id
            ),
        });
    }
    if found.user_version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path_buf,
            found: found.user_version,
            supported: SCHEMA_VERSION,
        });
    }
    let fresh = found.user_version == 0 && found.objects.is_empty();
    if fresh {
        return Ok(());
    }
    if found.application_id != APPLICATION_ID {
        return Err(OpenError::ForeignSchema {
            path: path_buf,
            detail: format!(
                "user_version {} and tables or indexes that are not ours: {}",
                found.user_version,
                list(&found.objects)
            ),
        });
    }
    if found.user_version == 0 {
        return Err(OpenError::Corrupt {
            path: path_buf,
            detail: format!(
                "marked as a Mostro database but without a schema version; it holds: {}",
                list(&found.objects)
            ),
        });
    }
    let missing: Vec<String> = OUR_TABLES
        .iter()
        .filter(|t| !found.objects.iter().any(|o| o == *t))
        .map(|t| (*t).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(OpenError::Corrupt {
            path: path_buf,
            detail: format!(
                "schema version {} but tables missing: {}",
                found.user_version,
                list(&missing)
            ),
        });
    }
    Ok(())
}

/// Applies the migrations the file lacks, each in its own transaction with its version bump.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let err = |e: rusqlite::Error| OpenError::from_sqlite(path, &e);
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // Read again under the write lock: another process may have migrated meanwhile.
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(sql) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(());
        };
        let next = version.saturating_add(1);
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", next).map_err(err)?;
        tx.commit().map_err(err)?;
        info!(path = %path.display(), version = next, "database schema migrated");
    }
}

/// Warns when the schema looks hand-edited (missing indexes make periodic queries scan).
pub(crate) fn check_indexes(conn: &Connection, path: &Path) {
    const INDEXES: &[&str] = &[
        "orders_deadline",
        "orders_hold_hash",
        "orders_dispute",
        "orders_htlc_expiry",
        "orders_open_maker",
        "orders_open_taker",
        "orders_open",
        "outbox_pending",
        "outbox_dead",
        "events_seen_at",
    ];
    for name in INDEXES {
        let found = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .is_ok();
        if !found {
            warn!(path = %path.display(), index = name, "index missing: queries will be slow");
        }
    }
}
