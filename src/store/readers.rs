//! The history readers: a few threads that answer history queries (CHATHISTORY) off
//! the writer, each against a fresh [`Snapshot`] (the uncommitted tail, then a redb
//! read snapshot). redb's MVCC means a reader never waits for the writer's commit or
//! fsync, and the tail means it still sees every record handed to the store before
//! the query was queued. They only read; they never write the store.

use super::history::Snapshot;
use super::uncommitted::UncommittedHistory;
use super::WriteRefused;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Reader threads: queries are short (a range read, well under a millisecond), so
/// two keep up with many shards while leaving the cores to the shards and writer.
pub const READERS: usize = 2;

/// Queries that may wait for a reader. A full queue refuses more (the caller answers
/// `FAIL ... MESSAGE_ERROR`) rather than growing without bound.
pub const READ_QUEUE_LEN: usize = 1024;

/// One query: given the snapshot it reads (or why none could be opened), it
/// answers its asker. Runs on a reader thread: it MUST NOT block on anything but
/// the store, and MUST answer whatever it is given.
pub type HistoryRead = Box<dyn FnOnce(Result<&Snapshot, &redb::Error>) + Send>;

/// The queue to the readers and their threads; owned by the [`super::Store`], which
/// closes the queue and joins them when dropped (queued queries are answered first).
pub(super) struct Readers {
    queue: SyncSender<HistoryRead>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Starts [`READERS`] threads reading `database` with `uncommitted`.
    pub(super) fn start(
        database: &Arc<redb::Database>,
        uncommitted: &Arc<UncommittedHistory>,
    ) -> std::io::Result<Readers> {
        let (queue, waiting) = mpsc::sync_channel(READ_QUEUE_LEN);
        let waiting = Arc::new(Mutex::new(waiting));
        let threads = (0..READERS)
            .map(|index| {
                let (database, uncommitted) = (database.clone(), uncommitted.clone());
                let waiting = waiting.clone();
                std::thread::Builder::new()
                    .name(format!("store-reader-{index}"))
                    .spawn(move || answer(&database, &uncommitted, &waiting))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Readers { queue, threads })
    }

    /// Queues `read` without waiting.
    pub(super) fn queue(&self, read: HistoryRead) -> Result<(), WriteRefused> {
        self.queue.try_send(read).map_err(|error| match error {
            TrySendError::Full(_) => WriteRefused::ReadersBusy,
            TrySendError::Disconnected(_) => WriteRefused::Stopped,
        })
    }

    /// Closes the queue and waits for the threads to answer what is in it.
    pub(super) fn stop(self) {
        drop(self.queue);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// A reader thread: one query at a time, each on a snapshot of its own.
fn answer(
    database: &redb::Database,
    uncommitted: &UncommittedHistory,
    waiting: &Mutex<Receiver<HistoryRead>>,
) {
    loop {
        // The lock is held while waiting: one idle reader waits on the queue, the
        // others on the lock.
        let next = match waiting.lock() {
            Ok(waiting) => waiting.recv(),
            Err(_) => return,
        };
        let Ok(read) = next else {
            return;
        };
        // The tail first, the snapshot after (see `uncommitted`).
        let snapshot = Snapshot::open(database, uncommitted.view());
        read(snapshot.as_ref());
    }
}
