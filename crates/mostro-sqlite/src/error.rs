//! Errors: [`OpenError`] when opening a database, and the mapping of SQLite failures to the
//! port's [`StoreError`] kinds at run time.

use std::io;
use std::path::{Path, PathBuf};

use mostro_core::ports::{StoreError, StoreErrorKind};
use rusqlite::ErrorCode;

/// Why a database could not be opened. Every variant names the database path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory that should hold the database does not exist.
    #[error("{}: directory {} does not exist", .path.display(), .dir.display())]
    MissingDirectory {
        /// Database path.
        path: PathBuf,
        /// The missing directory.
        dir: PathBuf,
    },
    /// Something on the way to the database is not a directory.
    #[error("{}: {} is not a directory", .path.display(), .dir.display())]
    NotADirectory {
        /// Database path.
        path: PathBuf,
        /// The offending path component.
        dir: PathBuf,
    },
    /// The database, or the files SQLite needs next to it (`-wal`, `-shm`), cannot be written.
    #[error("{}: cannot write the database (read-only file, directory or file system): {detail}", .path.display())]
    ReadOnly {
        /// Database path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The file exists but is not an SQLite database (or its header is destroyed).
    #[error("{}: file is not a database (wrong path, or a corrupt or encrypted file): {detail}", .path.display())]
    NotADatabase {
        /// Database path.
        path: PathBuf,
        /// SQLite's message.
        detail: String,
    },
    /// The file is an SQLite database but its content is damaged.
    #[error("{}: database is corrupt: {detail}; restore it from a backup", .path.display())]
    Corrupt {
        /// Database path.
        path: PathBuf,
        /// SQLite's message.
        detail: String,
    },
    /// The database belongs to another application (tables that are not ours).
    #[error("{}: foreign schema, this is not a Mostro database: {detail}", .path.display())]
    ForeignSchema {
        /// Database path.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The database was written by a newer version of this software.
    #[error(
        "{}: schema version {found} is newer than this binary supports (up to {supported}); \
         run a newer mostrod or restore a backup",
        .path.display()
    )]
    NewerSchema {
        /// Database path.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },
    /// No space left (on the disk, or under the configured size limit).
    #[error("{}: disk full: {detail}", .path.display())]
    DiskFull {
        /// Database path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// Another process holds a lock on the database longer than the busy timeout.
    #[error("{}: database is locked by another process: {detail}", .path.display())]
    Locked {
        /// Database path.
        path: PathBuf,
        /// SQLite's message.
        detail: String,
    },
    /// Any other I/O or SQLite failure.
    #[error("{}: cannot open database: {detail}", .path.display())]
    Other {
        /// Database path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl OpenError {
    /// The database path the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            OpenError::MissingDirectory { path, .. }
            | OpenError::NotADirectory { path, .. }
            | OpenError::ReadOnly { path, .. }
            | OpenError::NotADatabase { path, .. }
            | OpenError::Corrupt { path, .. }
            | OpenError::ForeignSchema { path, .. }
            | OpenError::NewerSchema { path, .. }
            | OpenError::DiskFull { path, .. }
            | OpenError::Locked { path, .. }
            | OpenError::Other { path, .. } => path,
        }
    }

    /// Classifies an SQLite error met while opening `path`.
    pub(crate) fn from_sqlite(path: &Path, e: &rusqlite::Error) -> OpenError {
        let path = path.to_path_buf();
        let detail = e.to_string();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotADatabase { path, detail },
            Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt { path, detail },
            Some(ErrorCode::DiskFull) => OpenError::DiskFull { path, detail },
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                OpenError::ReadOnly { path, detail }
            },
            Some(ErrorCode::CannotOpen) => OpenError::ReadOnly {
                path,
                detail: format!(
                    "{detail} (SQLite must also create the -wal and -shm files next to the database)"
                ),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                OpenError::Locked { path, detail }
            },
            _ => OpenError::Other { path, detail },
        }
    }

    /// Classifies a file-system error met while creating or checking `path`.
    pub(crate) fn from_io(path: &Path, what: &str, e: &io::Error) -> OpenError {
        let path_buf = path.to_path_buf();
        let detail = format!("{what}: {e}");
        match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                OpenError::ReadOnly {
                    path: path_buf,
                    detail,
                }
            },
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => OpenError::DiskFull {
                path: path_buf,
                detail,
            },
            io::ErrorKind::NotFound => OpenError::MissingDirectory {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path: path_buf,
            },
            io::ErrorKind::NotADirectory => OpenError::NotADirectory {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path: path_buf,
            },
            _ => OpenError::Other {
                path: path_buf,
                detail,
            },
        }
    }
}

/// Maps an SQLite failure to the port's error kinds.
pub(crate) fn store_err(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => {
            StoreError::new(StoreErrorKind::Corrupt, format!("undecodable column: {e}"))
        },
        _ => match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::new(StoreErrorKind::Corrupt, format!("database corrupt: {e}"))
            },
            Some(ErrorCode::DiskFull) => StoreError::new(
                StoreErrorKind::Io,
                format!("disk full (or the configured size limit reached): {e}"),
            ),
            _ => StoreError::new(StoreErrorKind::Io, format!("sqlite: {e}")),
        },
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == ErrorCode::ConstraintViolation
                && matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
        },
        _ => false,
    }
}

/// A decoding failure of stored data.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, what.to_string())
}

/// An I/O-kind failure with a message.
pub(crate) fn io_err(what: impl std::fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Io, what.to_string())
}
