//! The node's embedded store: one redb file in the data directory, where what must
//! outlive the process (accounts, channel history, read markers) is kept.
//!
//! Writes never happen on a shard's thread: a shard (or the cluster link) hands the
//! store a [`WriteJob`], and one writer thread runs every job queued since its last
//! commit in a single transaction (group commit), at most once per
//! [`COMMIT_INTERVAL`] while jobs keep coming: a job after a quiet spell commits at
//! once, within an fsync; under a steady stream the writer gathers the interval's
//! jobs into one commit, so a commit's cost (its fsync and the pages it writes) is
//! paid a few times a second, not once per message. A barrier (an account that must
//! be stored before it is acknowledged) or a backup ends the wait. What a SIGKILL can
//! lose is what was queued but not yet committed: at most the last interval's jobs
//! and those queued behind them, bounded by [`QUEUE_LEN`]. Queries do not wait for
//! commits: they read the uncommitted history too ([`uncommitted`]).
//!
//! Reads take a snapshot ([`Store::read`]) from any thread; redb's MVCC means a
//! reader never waits for the writer. History queries run on the store's reader
//! threads ([`Store::read_history`]) against a snapshot completed with the history
//! handed to the writer but not yet committed ([`uncommitted`]).
//!
//! redb was chosen over SQLite (a C library and a SQL layer the server does not
//! need) and sled (unmaintained): it is pure Rust, ACID with crash-safe commits,
//! and its typed tables keep the schema in the code.

pub mod accounts;
pub mod history;
pub mod read_markers;
pub mod readers;
pub mod uncommitted;

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tracing::{error, warn};

/// The store's file name in the data directory.
pub const STORE_FILE: &str = "ringchat.redb";

/// Jobs that may wait for the writer. A full queue refuses more (the caller decides
/// what a refusal means to its client) rather than growing without bound.
pub const QUEUE_LEN: usize = 65_536;

/// Most jobs in one transaction: a bound on the work a SIGKILL can undo.
const MAX_BATCH: usize = 4_096;

/// The writer commits at most once per interval while jobs keep coming (see the
/// module comment): what a SIGKILL can lose of a steady stream.
pub const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a live upgrade's new process waits for the old one's lock on the file.
const PREDECESSOR_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// One change to the store, run inside the writer's transaction. An error is logged
/// and the batch's other jobs still commit, so a job checks before it writes: what it
/// wrote before failing would commit with them.
pub type WriteJob = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send>;

/// The node's handle to its store; shared by every shard (it is `Sync`).
pub struct Store {
    path: PathBuf,
    database: Arc<redb::Database>,
    jobs: SyncSender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// History handed to the writer and not yet committed: filled by
    /// [`history::keep`], emptied by the writer after each commit, read by the readers.
    uncommitted: Arc<uncommitted::UncommittedHistory>,
    /// The history reader threads; stopped (after answering what is queued) on drop.
    readers: Option<readers::Readers>,
}

/// Why a job (a write, or a history query) was not queued.
#[derive(Debug, thiserror::Error)]
pub enum WriteRefused {
    /// The writer is behind by [`QUEUE_LEN`] jobs (a disk far slower than the load).
    #[error("the store is behind by {QUEUE_LEN} writes")]
    Behind,
    /// The writer (or, for a query, the readers) has stopped (a failed commit, or
    /// shutdown).
    #[error("the store's writer has stopped")]
    Stopped,
    /// [`readers::READ_QUEUE_LEN`] history queries are waiting for a reader.
    #[error(
        "the store's readers are behind by {} queries",
        readers::READ_QUEUE_LEN
    )]
    ReadersBusy,
}

enum Message {
    Job(WriteJob),
    /// A job that only reads, in order with the writes queued before it.
    Read(WriteJob),
    /// Answered once every job queued before it has committed.
    Barrier(mpsc::Sender<()>),
    /// Copy the file, between two transactions, once the jobs before it committed.
    Backup(PathBuf, BackupDone),
}

/// Told how a [`Store::backup`] went: the copy's size in bytes, or why it failed. Runs
/// on the writer thread, so it must not block.
pub type BackupDone = Box<dyn FnOnce(std::io::Result<u64>) + Send>;

impl Store {
    /// [`Store::open`] for a live upgrade's new process, which may get there before the
    /// kernel has released the old process's lock on the file: the old one has exited
    /// (its parent changed), but an exiting process's last file references can be
    /// dropped a scheduler tick later (deferred `fput`). Retries while the file is
    /// still locked, for at most [`PREDECESSOR_PATIENCE`].
    pub fn open_after_predecessor(data_dir: &Path) -> anyhow::Result<Store> {
        let deadline = Instant::now() + PREDECESSOR_PATIENCE;
        loop {
            match Store::open(data_dir) {
                Err(error) if still_locked(&error) && Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                outcome => return outcome,
            }
        }
    }

    /// Opens (or creates) the store in `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let path = data_dir.join(STORE_FILE);
        if !path.exists() {
            create_whole(data_dir, &path)
                .with_context(|| format!("cannot create the store {}", path.display()))?;
        }
        let database = redb::Database::create(&path)
            .with_context(|| format!("cannot open the store {}", path.display()))?;
        let kept_through = history::prepare(&database)
            .with_context(|| format!("cannot prepare the store {}", path.display()))?;
        let uncommitted = Arc::new(uncommitted::UncommittedHistory::after(kept_through));
        let database = Arc::new(database);
        let (jobs, queue) = mpsc::sync_channel(QUEUE_LEN);
        let writer = {
            let (database, uncommitted) = (database.clone(), uncommitted.clone());
            let path = path.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_batches(&database, &path, &queue, &uncommitted))
                .context("cannot start the store's writer thread")?
        };
        let readers = readers::Readers::start(&database, &uncommitted)
            .context("cannot start the store's reader threads")?;
        Ok(Store {
            path,
            database,
            jobs,
            writer: Mutex::new(Some(writer)),
            uncommitted,
            readers: Some(readers),
        })
    }

    /// Queues a history query for a reader thread without waiting: it runs on a
    /// snapshot that holds every record [`history::keep`] was given before this call,
    /// committed or not, and never waits for the writer.
    pub fn read_history(&self, read: readers::HistoryRead) -> Result<(), WriteRefused> {
        match &self.readers {
            Some(readers) => readers.queue(read),
            None => Err(WriteRefused::Stopped),
        }
    }

    /// The history handed to the writer and not yet committed.
    pub(crate) fn uncommitted(&self) -> &Arc<uncommitted::UncommittedHistory> {
        &self.uncommitted
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `job` for the writer without waiting for it.
    pub fn write(&self, job: WriteJob) -> Result<(), WriteRefused> {
        self.jobs
            .try_send(Message::Job(job))
            .map_err(|error| match error {
                TrySendError::Full(_) => WriteRefused::Behind,
                TrySendError::Disconnected(_) => WriteRefused::Stopped,
            })
    }

    /// Queues `job`, which only reads, to run on the writer in order with the jobs
    /// queued before it: it sees what they wrote, committed or not yet. A batch of
    /// such jobs alone is not committed (no fsync), so an idle store answers them at
    /// the speed of the read. What `job` writes anyway may be thrown away.
    pub fn read_in_order(&self, job: WriteJob) -> Result<(), WriteRefused> {
        self.jobs
            .try_send(Message::Read(job))
            .map_err(|error| match error {
                TrySendError::Full(_) => WriteRefused::Behind,
                TrySendError::Disconnected(_) => WriteRefused::Stopped,
            })
    }

    /// A consistent snapshot of everything committed so far.
    pub fn read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        use redb::ReadableDatabase;
        self.database.begin_read()
    }

    /// Copies the store to `to` while the server runs, and tells `done` how it went.
    ///
    /// The writer thread is the file's only writer, so it makes the copy itself,
    /// after committing the jobs queued before this call and before starting the next
    /// transaction: the copy holds exactly those jobs, as of one commit, never torn. Writes queued
    /// meanwhile wait (up to [`QUEUE_LEN`] jobs) for as long as the copy takes, about a
    /// second per gigabyte. The copy is written beside `to` and renamed into place, so
    /// `to` is either complete or absent.
    pub fn backup(&self, to: PathBuf, done: BackupDone) -> Result<(), WriteRefused> {
        self.jobs
            .try_send(Message::Backup(to, done))
            .map_err(|error| match error {
                TrySendError::Full(_) => WriteRefused::Behind,
                TrySendError::Disconnected(_) => WriteRefused::Stopped,
            })
    }

    /// Blocks until every job queued before this call has committed (shutdown, and
    /// tests that read what they wrote). Never call it on a shard's thread.
    pub fn sync(&self) -> Result<(), WriteRefused> {
        let (done, wait) = mpsc::channel();
        self.jobs
            .send(Message::Barrier(done))
            .map_err(|_| WriteRefused::Stopped)?;
        wait.recv().map_err(|_| WriteRefused::Stopped)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    /// Answers the queued queries, commits what is queued, then joins the threads.
    fn drop(&mut self) {
        if let Some(readers) = self.readers.take() {
            readers.stop();
        }
        let (closed, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = writer.join();
        }
    }
}

/// Creates an empty store at `path` in one step: made beside it and renamed into
/// place. The server listens before it opens its store, so a SIGKILL can land while
/// redb writes a new file's header; a half-written file there would stop every
/// later start ("Not a redb database"), while a half-made `.new` is just replaced.
/// Whether opening failed only because another process still holds the file's lock.
fn still_locked(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<redb::DatabaseError>(),
            Some(redb::DatabaseError::DatabaseAlreadyOpen)
        )
    })
}

fn create_whole(data_dir: &Path, path: &Path) -> anyhow::Result<()> {
    let fresh = data_dir.join(format!("{STORE_FILE}.new"));
    let _ = std::fs::remove_file(&fresh);
    drop(redb::Database::create(&fresh)?);
    std::fs::File::open(&fresh)?.sync_all()?;
    std::fs::rename(&fresh, path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

/// The writer thread: each pass takes the first waiting job, everything queued
/// behind it (up to [`MAX_BATCH`]), runs them in one transaction and commits it.
/// After each commit it lets the history tail drop what the commit holds.
fn write_batches(
    database: &redb::Database,
    path: &Path,
    queue: &Receiver<Message>,
    uncommitted: &uncommitted::UncommittedHistory,
) {
    let mut barriers = Vec::new();
    let mut backups = Vec::new();
    // When the last commit began: the next waits until an interval after it.
    let mut last_commit: Option<Instant> = None;
    while let Ok(first) = queue.recv() {
        // A backup ends its batch: the copy holds exactly the jobs queued before it;
        // a barrier or a read ends its wait (someone waits for the answer).
        let mut ends_batch = matches!(first, Message::Backup(..));
        let mut ends_wait = !matches!(first, Message::Job(_));
        let gather_until = last_commit.map(|at| at + COMMIT_INTERVAL);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && !ends_batch {
            let next = match gather_until.filter(|_| !ends_wait) {
                Some(until) => match until.checked_duration_since(Instant::now()) {
                    Some(left) => queue.recv_timeout(left).ok(),
                    None => queue.try_recv().ok(),
                },
                None => queue.try_recv().ok(),
            };
            let Some(message) = next else {
                break;
            };
            ends_batch = matches!(message, Message::Backup(..));
            ends_wait |= !matches!(message, Message::Job(_));
            batch.push(message);
        }
        let transaction = match database.begin_write() {
            Ok(transaction) => transaction,
            Err(why) => {
                error!(store = %path.display(), %why, "the store cannot begin a write; its writer stops");
                return;
            }
        };
        let mut wrote = false;
        for message in batch {
            match message {
                Message::Job(job) => {
                    wrote = true;
                    if let Err(why) = job(&transaction) {
                        warn!(store = %path.display(), %why, "a store write failed and was left out");
                    }
                }
                Message::Read(job) => {
                    if let Err(why) = job(&transaction) {
                        warn!(store = %path.display(), %why, "a store read failed");
                    }
                }
                Message::Barrier(done) => barriers.push(done),
                Message::Backup(to, done) => backups.push((to, done)),
            }
        }
        if !wrote {
            // Only reads (and barriers, whose jobs committed in earlier batches).
            if let Err(why) = transaction.abort() {
                warn!(store = %path.display(), %why, "a read-only batch did not end cleanly");
            }
            for done in barriers.drain(..) {
                let _ = done.send(());
            }
            copy_file(path, &mut backups);
            continue;
        }
        let began = Instant::now();
        if let Err(why) = transaction.commit() {
            error!(store = %path.display(), %why, "the store cannot commit; its writer stops");
            return;
        }
        // After a quiet spell the next job commits at once; in a stream, an interval
        // after this commit.
        last_commit = Some(began);
        uncommitted.release_committed();
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
        copy_file(path, &mut backups);
    }
}

/// Makes the backups asked for in a batch, now that it committed and no transaction
/// is open: the file on disk is exactly the last commit.
fn copy_file(path: &Path, backups: &mut Vec<(PathBuf, BackupDone)>) {
    for (to, done) in backups.drain(..) {
        let partial = to.with_extension("partial");
        let copied = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::copy(path, &partial))
            .and_then(|bytes| std::fs::File::open(&partial)?.sync_all().map(|()| bytes))
            .and_then(|bytes| std::fs::rename(&partial, &to).map(|()| bytes));
        if copied.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        done(copied);
    }
}

/// A fresh, empty directory for one unit test's store.
#[cfg(test)]
pub(crate) fn test_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringchat-store-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableTable, TableDefinition};

    const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("test_counts");

    fn add(key: &'static str, by: u64) -> WriteJob {
        Box::new(move |transaction| {
            let mut table = transaction.open_table(COUNTS)?;
            let now = table.get(key)?.map_or(0, |value| value.value());
            table.insert(key, now + by)?;
            Ok(())
        })
    }

    fn count(store: &Store, key: &str) -> Option<u64> {
        let snapshot = store.read().expect("a read snapshot");
        let table = snapshot.open_table(COUNTS).ok()?;
        let value = table.get(key).expect("a read");
        value.map(|value| value.value())
    }

    #[test]
    fn writes_queued_before_a_sync_are_readable_after_it_in_order() {
        let dir = test_dir();
        let store = Store::open(&dir).expect("the store opens");
        for by in 1..=100 {
            store.write(add("a", by)).expect("the queue has room");
        }
        store.sync().expect("the writer runs");
        assert_eq!(count(&store, "a"), Some(5_050));
    }

    #[test]
    fn an_upgrade_successor_waits_for_the_old_lock_and_sees_what_was_written() {
        let dir = test_dir();
        let old = Store::open(&dir).expect("the store opens");
        old.write(add("kept", 7)).expect("queued");
        old.sync().expect("the writer runs");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(old);
        });
        let new = Store::open_after_predecessor(&dir).expect("opens once the lock is free");
        release.join().expect("the old store closes");
        assert_eq!(count(&new, "kept"), Some(7));
    }

    #[test]
    fn a_store_held_elsewhere_is_refused_as_locked() {
        let dir = test_dir();
        let _held = Store::open(&dir).expect("the store opens");
        let Err(refused) = Store::open(&dir) else {
            panic!("a second open is refused");
        };
        assert!(still_locked(&refused), "{refused:#}");
    }

    #[test]
    fn a_read_in_order_sees_the_writes_queued_before_it() {
        let dir = test_dir();
        let store = Store::open(&dir).expect("the store opens");
        store.write(add("seen", 3)).expect("queued");
        let (done, answer) = mpsc::channel();
        store
            .read_in_order(Box::new(move |transaction| {
                let table = transaction.open_table(COUNTS)?;
                let value = table.get("seen")?.map(|value| value.value());
                let _ = done.send(value);
                Ok(())
            }))
            .expect("queued");
        assert_eq!(answer.recv().expect("the writer answers"), Some(3));
        store
            .sync()
            .expect("the writer runs after a read-only batch");
        assert_eq!(count(&store, "seen"), Some(3));
    }

    #[test]
    fn what_was_committed_survives_reopening_the_file() {
        let dir = test_dir();
        {
            let store = Store::open(&dir).expect("the store opens");
            store.write(add("kept", 7)).expect("the queue has room");
            // Dropping the store commits what is queued.
        }
        let store = Store::open(&dir).expect("the store opens again");
        assert_eq!(count(&store, "kept"), Some(7));
    }

    #[test]
    fn a_failing_job_is_left_out_and_the_rest_of_its_batch_commits() {
        let dir = test_dir();
        let store = Store::open(&dir).expect("the store opens");
        store.write(add("before", 1)).expect("queued");
        store
            .write(Box::new(|_| {
                Err(redb::Error::Io(std::io::Error::other("refused on purpose")))
            }))
            .expect("queued");
        store.write(add("after", 1)).expect("queued");
        store.sync().expect("the writer still runs");
        assert_eq!(count(&store, "before"), Some(1));
        assert_eq!(count(&store, "after"), Some(1));
    }

    #[test]
    fn a_backup_taken_while_writes_go_on_holds_every_commit_before_it() {
        let dir = test_dir();
        let store = Store::open(&dir).expect("the store opens");
        for by in 1..=100 {
            store.write(add("a", by)).expect("the queue has room");
        }
        let copy = test_dir();
        let (done, outcome) = mpsc::channel();
        store
            .backup(
                copy.join(STORE_FILE),
                Box::new(move |copied| done.send(copied.map_err(|e| e.to_string())).unwrap()),
            )
            .expect("queued");
        for by in 1..=100 {
            store.write(add("after", by)).expect("the queue has room");
        }
        let bytes = outcome
            .recv()
            .expect("an answer")
            .expect("the copy is made");
        assert!(bytes > 0);
        store.sync().expect("the writer still runs");
        let restored = Store::open(&copy).expect("the copy opens as a store");
        assert_eq!(count(&restored, "a"), Some(5050));
        assert_eq!(count(&restored, "after"), None);
        assert_eq!(count(&store, "after"), Some(5050));
    }

    #[test]
    fn a_backup_to_a_place_that_cannot_be_written_says_why_and_leaves_nothing() {
        let dir = test_dir();
        let store = Store::open(&dir).expect("the store opens");
        let (done, outcome) = mpsc::channel();
        store
            .backup(
                PathBuf::from("/proc/ringchat-no-such-dir/copy.redb"),
                Box::new(move |copied| done.send(copied.is_err()).unwrap()),
            )
            .expect("queued");
        assert!(outcome.recv().expect("an answer"), "the copy fails");
        store.write(add("still", 1)).expect("queued");
        store.sync().expect("the writer still runs");
        assert_eq!(count(&store, "still"), Some(1));
    }

    #[test]
    fn a_store_left_half_made_by_a_crash_is_made_again() {
        let dir = test_dir();
        std::fs::write(dir.join(format!("{STORE_FILE}.new")), b"redb\x1a half").unwrap();
        let store = Store::open(&dir).expect("the store opens");
        store.write(add("a", 1)).expect("queued");
        store.sync().expect("committed");
        assert_eq!(count(&store, "a"), Some(1));
        assert!(!dir.join(format!("{STORE_FILE}.new")).exists());
    }

    #[test]
    fn a_store_that_cannot_be_created_says_where() {
        let error =
            Store::open(Path::new("/proc/ringchat-no-such-dir")).expect_err("no store under /proc");
        assert!(format!("{error:#}").contains("/proc/ringchat-no-such-dir/ringchat.redb"));
    }
}
