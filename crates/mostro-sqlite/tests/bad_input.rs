//! Opening bad files and bad places: every refusal is an `OpenError` naming the path, never a
//! panic, and a refused file is left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use mostro_core::ports::{Commit, Store, StoreErrorKind};
use mostro_sqlite::{OpenError, SCHEMA_VERSION, SqliteConfig, SqliteStore};
use mostro_testkit::store_suite::{identity, insert, order};

fn open_err(path: &Path) -> OpenError {
    open_err_with(path, SqliteConfig::default())
}

fn open_err_with(path: &Path, config: SqliteConfig) -> OpenError {
    match SqliteStore::open_with(path, config) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "message does not name the path: {msg}"
            );
            assert_eq!(e.path(), path);
            e
        },
    }
}

/// A store with one order in it, closed again.
async fn make_db(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    store
        .commit(Commit {
            orders: vec![insert(&order(1, identity(1)))],
            ..Commit::at(mostro_core::types::Timestamp(0))
        })
        .await
        .unwrap();
}

#[test]
fn garbage_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    let garbage: Vec<u8> = b"this is not an sqlite database at all. "
        .iter()
        .copied()
        .cycle()
        .take(8192)
        .collect();
    fs::write(&path, &garbage).unwrap();
    let e = open_err(&path);
    assert!(matches!(e, OpenError::NotADatabase { .. }), "{e:?}");
    assert!(e.to_string().contains("not a database"), "{e}");
    assert_eq!(
        fs::read(&path).unwrap(),
        garbage,
        "a refused file must not be modified"
    );
}

#[tokio::test]
async fn damaged_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    make_db(&path).await;
    // Keep the 100-byte header, destroy the rest of page 1 (the schema table).
    let mut bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 4096, "database too small: {}", bytes.len());
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    fs::write(&path, &bytes).unwrap();
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            OpenError::Corrupt { .. } | OpenError::NotADatabase { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn foreign_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER); INSERT INTO accounts VALUES (1, 5);")
            .unwrap();
    }
    let before = fs::read(&path).unwrap();
    let e = open_err(&path);
    assert!(matches!(e, OpenError::ForeignSchema { .. }), "{e:?}");
    assert!(e.to_string().contains("accounts"), "{e}");
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "a foreign database must not be modified"
    );
    assert!(
        !PathBuf::from(format!("{}-wal", path.display())).exists(),
        "switched to WAL"
    );
}

#[test]
fn foreign_application_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA application_id = 42; CREATE TABLE t (x);")
            .unwrap();
    }
    let e = open_err(&path);
    assert!(matches!(e, OpenError::ForeignSchema { .. }), "{e:?}");
    assert!(e.to_string().contains("0x2a"), "{e}");
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    make_db(&path).await;
    let newer = SCHEMA_VERSION + 5;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", newer).unwrap();
    }
    let e = open_err(&path);
    match &e {
        OpenError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (newer, SCHEMA_VERSION));
        },
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("version {newer}"))
            && msg.contains(&format!("up to {SCHEMA_VERSION}")),
        "{msg}"
    );
}

#[tokio::test]
async fn reopen_keeps_data_and_does_not_migrate_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.db");
    make_db(&path).await;
    let store = SqliteStore::open(&path).unwrap();
    assert!(
        store
            .order(order(1, identity(1)).id)
            .await
            .unwrap()
            .is_some()
    );
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let app: i64 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, mostro_sqlite::APPLICATION_ID);
}

#[test]
fn missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no").join("such").join("mostro.db");
    let e = open_err(&path);
    assert!(matches!(e, OpenError::MissingDirectory { .. }), "{e:?}");
    assert!(
        !dir.path().join("no").exists(),
        "directories must not be created"
    );
}

#[test]
fn path_under_a_regular_file_is_refused() {
    // Permission bits do not stop root; a path below a regular file fails for everyone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let path = file.join("mostro.db");
    let e = open_err(&path);
    assert!(matches!(e, OpenError::NotADirectory { .. }), "{e:?}");
}

#[test]
fn a_directory_is_not_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_err(dir.path());
    assert!(matches!(e, OpenError::Other { .. }), "{e:?}");
}

/// Marks a path immutable (`chattr +i`) for the guard's lifetime. `None` when the file system
/// or the capabilities do not allow it.
struct Immutable(PathBuf);

impl Immutable {
    fn set(p: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(p)
            .output()
            .ok()?
            .status
            .success();
        ok.then(|| Immutable(p.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn can_write(p: &Path) -> bool {
    fs::OpenOptions::new().append(true).open(p).is_ok()
}

#[tokio::test]
async fn read_only_file_and_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ro_dir = dir.path().join("ro");
    fs::create_dir(&ro_dir).unwrap();
    let existing = ro_dir.join("existing.db");
    make_db(&existing).await;
    let mut tested = Vec::new();

    // 1. Permission bits: meaningful only when not running as root.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o400)).unwrap();
        if can_write(&existing) {
            eprintln!("permission bits do not stop this user (root): mode-0400 case not testable");
        } else {
            let e = open_err(&existing);
            assert!(matches!(e, OpenError::ReadOnly { .. }), "{e:?}");
            tested.push("mode 0400 file");
        }
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o600)).unwrap();
    }

    // 2. Immutable file (stops root too), when chattr works here.
    if let Some(_guard) = Immutable::set(&existing) {
        let e = open_err(&existing);
        assert!(matches!(e, OpenError::ReadOnly { .. }), "{e:?}");
        tested.push("immutable file");
    }

    // 3. Immutable directory: a new database cannot be created in it, and an existing one
    //    cannot get its -wal file.
    if let Some(_guard) = Immutable::set(&ro_dir) {
        let new = ro_dir.join("new.db");
        let e = open_err(&new);
        assert!(matches!(e, OpenError::ReadOnly { .. }), "{e:?}");
        assert!(!new.exists());
        let e = open_err(&existing);
        assert!(
            matches!(e, OpenError::ReadOnly { .. } | OpenError::Other { .. }),
            "{e:?}"
        );
        tested.push("immutable directory");
    }
    eprintln!("read-only cases tested: {tested:?}");
    assert!(
        !tested.is_empty(),
        "no read-only case could be tested on this machine"
    );
}

#[test]
fn disk_full_while_creating_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.db");
    let config = SqliteConfig {
        max_size_bytes: Some(8192),
        ..SqliteConfig::default()
    };
    let e = open_err_with(&path, config);
    assert!(matches!(e, OpenError::DiskFull { .. }), "{e:?}");
    assert!(e.to_string().contains("disk full"), "{e}");
    // With room, the same file opens (nothing half-migrated was left behind).
    SqliteStore::open(&path).unwrap();
}

#[tokio::test]
async fn disk_full_while_committing_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let config = SqliteConfig {
        max_size_bytes: Some(320 * 1024), // the schema (six tables, their indexes) takes part of it
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).unwrap();
    let mut stored = Vec::new();
    let mut failure = None;
    for n in 1..2000u16 {
        let mut o = order(n, identity(1));
        o.payment_method = "x".repeat(4000);
        match store
            .commit(Commit {
                orders: vec![insert(&o)],
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
        {
            Ok(_) => stored.push(o),
            Err(e) => {
                failure = Some((o, e));
                break;
            },
        }
    }
    let (refused, e) = failure.expect("the size limit was never reached");
    assert_eq!(e.kind, StoreErrorKind::Io, "{e}");
    assert!(e.message.contains("full"), "{e}");
    assert!(stored.len() > 10, "only {} orders fit", stored.len());
    // Everything acknowledged is intact, the refused commit left nothing, reads still work.
    assert_eq!(store.order(refused.id).await.unwrap(), None);
    for o in &stored {
        assert_eq!(store.order(o.id).await.unwrap().as_ref(), Some(o));
    }
    store.integrity_check().await.unwrap();
    // A small commit that needs no new page may still fit; a big one keeps failing cleanly.
    let again = store
        .commit(Commit {
            orders: vec![insert(&refused)],
            ..Commit::at(mostro_core::types::Timestamp(0))
        })
        .await;
    assert_eq!(again.map_err(|e| e.kind), Err(StoreErrorKind::Io));
    drop(store);
    // Without the limit the same file takes the order.
    let store = SqliteStore::open(&path).unwrap();
    store
        .commit(Commit {
            orders: vec![insert(&refused)],
            ..Commit::at(mostro_core::types::Timestamp(0))
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .commit(Commit {
            orders: vec![insert(&order(1, identity(1)))],
            ..Commit::at(mostro_core::types::Timestamp(0))
        })
        .await
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600, "the WAL holds the same secrets");
}
