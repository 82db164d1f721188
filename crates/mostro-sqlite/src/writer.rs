//! The single writer: one connection owned by a dedicated thread, fed through a channel.
//!
//! Only this thread ever writes, so the store never meets "database is locked" from itself.
//! Commits that queue up while a transaction is running are applied together in the next
//! transaction (group commit), each inside its own savepoint: a commit that fails its checks is
//! rolled back alone and the others proceed, and a batch costs one WAL sync instead of one per
//! commit. Callers are answered only after the transaction holding their commit is durable.

use std::sync::mpsc;
use std::thread::JoinHandle;

use mostro_core::ports::{Commit, EffectId, StoreError, StoreErrorKind};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;
use tracing::warn;

use crate::error::{io_err, store_err};
use crate::sql::{Fail, apply_commit};

type Reply = oneshot::Sender<Result<Vec<EffectId>, StoreError>>;
type Task = Box<dyn FnOnce(&mut Connection) + Send>;

enum Job {
    Commit(Commit, Reply),
    /// Runs alone on the writer connection; manages its own transaction.
    Run(Task),
}

/// Handle of the writer thread. Dropping it lets the thread finish the queued jobs, close the
/// connection and exit; the drop waits for that.
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection, max_batch: usize) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mostro-sqlite-writer".into())
            .spawn(move || writer_loop(conn, &rx, max_batch.max(1)))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let Some(tx) = &self.tx else {
            return Err(stopped());
        };
        tx.send(job).map_err(|_| stopped())
    }

    /// Applies a commit; answers once it is durable (or refused).
    pub(crate) async fn commit(&self, commit: Commit) -> Result<Vec<EffectId>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Commit(commit, reply))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `f` on the writer connection, between commits.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(Box::new(move |conn| {
            // The receiver may be gone (caller canceled): nothing to do then.
            let _ = reply.send(f(conn));
        })))?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("sqlite writer thread panicked");
        }
    }
}

fn stopped() -> StoreError {
    io_err("sqlite writer thread stopped")
}

fn writer_loop(mut conn: Connection, rx: &mpsc::Receiver<Job>, max_batch: usize) {
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        match job {
            Job::Run(f) => f(&mut conn),
            Job::Commit(commit, reply) => {
                let mut batch = vec![(commit, reply)];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Job::Commit(c, r)) => batch.push((c, r)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        },
                        Err(_) => break,
                    }
                }
                run_batch(&mut conn, batch);
            },
        }
    }
    if let Err((_, e)) = conn.close() {
        warn!(error = %e, "closing the sqlite writer connection failed");
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<(Commit, Reply)>) {
    let (commits, replies): (Vec<Commit>, Vec<Reply>) = batch.into_iter().unzip();
    let results = match try_batch(conn, &commits) {
        Ok(results) => results,
        Err(e) if commits.len() == 1 => vec![Err(e)],
        Err(e) => {
            // An I/O-level failure aborts the whole transaction. Fall back to one transaction
            // per commit so that each caller gets the answer for its own commit alone.
            warn!(error = %e, batch = commits.len(), "group commit failed; retrying one by one");
            commits
                .iter()
                .map(|c| match try_batch(conn, std::slice::from_ref(c)) {
                    Ok(mut r) => r.pop().unwrap_or_else(|| Err(io_err("empty batch result"))),
                    Err(e) => Err(e),
                })
                .collect()
        },
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have stopped waiting; the commit stands either way.
        let _ = reply.send(result);
    }
}

/// One transaction for the batch, one savepoint per commit. `Ok` holds each commit's own
/// outcome (applied, or refused by its checks); `Err` means the transaction failed as a whole
/// and nothing was applied.
fn try_batch(
    conn: &mut Connection,
    commits: &[Commit],
) -> Result<Vec<Result<Vec<EffectId>, StoreError>>, StoreError> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| store_err(&e))?;
    if let [commit] = commits {
        // Alone: the transaction is the unit, no savepoint needed.
        return match apply_commit(&tx, commit) {
            Ok(ids) => {
                tx.commit().map_err(|e| store_err(&e))?;
                Ok(vec![Ok(ids)])
            },
            Err(Fail(e))
                if matches!(e.kind, StoreErrorKind::Conflict | StoreErrorKind::Duplicate) =>
            {
                tx.rollback().map_err(|e| store_err(&e))?;
                Ok(vec![Err(e)])
            },
            Err(Fail(e)) => Err(e),
        };
    }
    let mut results = Vec::with_capacity(commits.len());
    for commit in commits {
        let mut sp = tx.savepoint().map_err(|e| store_err(&e))?;
        match apply_commit(&sp, commit) {
            Ok(ids) => {
                sp.commit().map_err(|e| store_err(&e))?;
                results.push(Ok(ids));
            },
            Err(Fail(e))
                if matches!(e.kind, StoreErrorKind::Conflict | StoreErrorKind::Duplicate) =>
            {
                sp.rollback().map_err(|e| store_err(&e))?;
                sp.commit().map_err(|e| store_err(&e))?;
                results.push(Err(e));
            },
            // Dropping `tx` rolls everything back.
            Err(Fail(e)) => return Err(e),
        }
    }
    tx.commit().map_err(|e| store_err(&e))?;
    Ok(results)
}
