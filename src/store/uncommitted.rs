//! History handed to the store but not yet committed (the "uncommitted tail"): what
//! lets a CHATHISTORY query read a snapshot on a reader thread, never waiting behind
//! the writer's fsync, and still find every message its client could have seen. It
//! holds records and their order; it never writes the store and never reads it.
//!
//! The handshake, in three steps that each take this module's one lock:
//! 1. [`UncommittedHistory::hand_over`] (a shard's flush, through
//!    [`crate::store::history::keep`]) numbers its records, queues their write job
//!    and puts them in the tail, as one step: numbers follow the writer's queue.
//! 2. The write job stores, in the same transaction as the records, the number it
//!    carries ([`crate::store::history`]'s `history_kept_through`); after the commit
//!    the writer calls [`UncommittedHistory::release_committed`].
//! 3. A query takes [`UncommittedHistory::view`] first and opens its snapshot after:
//!    a record missing from the view was committed before the view, so the snapshot
//!    holds it; a record in the view whose number the snapshot has kept through is in
//!    the snapshot and is skipped. Nothing is missed, nothing is read twice.

use super::history::{Record, Retention};
use super::WriteRefused;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One flush handed to the store: its records in the order they were relayed.
#[derive(Debug)]
pub struct Kept {
    /// Its number: one more than the flush queued before it, across restarts (the
    /// store keeps the last one committed).
    pub id: u64,
    /// The records, shared with the write job that appends them.
    pub records: Vec<Record>,
    /// The retention the write job applies (the merged view applies it too).
    pub retention: Retention,
}

/// The tail, shared by the shards (who add), the writer (who removes) and the
/// readers (who copy it). Owned by the [`super::Store`]; bounded by the writer's queue
/// ([`super::QUEUE_LEN`] jobs): a flush the queue refuses is not added.
#[derive(Debug)]
pub struct UncommittedHistory {
    tail: Mutex<Tail>,
    /// The highest number the writer's open transaction holds; written only by the
    /// writer thread (inside a job), read by it after the commit.
    written_through: AtomicU64,
}

#[derive(Debug)]
struct Tail {
    /// The next flush's number.
    next: u64,
    /// Flushes queued and not yet released, in number order.
    kept: VecDeque<Arc<Kept>>,
}

impl UncommittedHistory {
    /// An empty tail whose first flush follows `committed_through`, the last number
    /// the store holds.
    pub fn after(committed_through: u64) -> UncommittedHistory {
        UncommittedHistory {
            tail: Mutex::new(Tail {
                next: committed_through + 1,
                kept: VecDeque::new(),
            }),
            written_through: AtomicU64::new(committed_through),
        }
    }

    /// Numbers `records`, has `queue` queue their write job, and on success adds
    /// them to the tail; all under the lock, so numbers follow the writer's queue
    /// and a reader never sees a flush the writer will not get. (Queueing first and
    /// adding after is the same as the other way round: the lock makes both one
    /// step for the readers and for [`UncommittedHistory::release_committed`].)
    ///
    /// Cost to the calling shard: one uncontended lock, one allocation (the shared
    /// records) and one push per flush; nothing per record.
    pub fn hand_over(
        &self,
        records: Vec<Record>,
        retention: Retention,
        queue: impl FnOnce(Arc<Kept>) -> Result<(), WriteRefused>,
    ) -> Result<(), WriteRefused> {
        let mut tail = self.lock();
        let kept = Arc::new(Kept {
            id: tail.next,
            records,
            retention,
        });
        queue(kept.clone())?;
        tail.next += 1;
        tail.kept.push_back(kept);
        Ok(())
    }

    /// Notes, on the writer thread inside its transaction, that the transaction
    /// holds flush `id`.
    pub fn written(&self, id: u64) {
        self.written_through.fetch_max(id, Ordering::Relaxed);
    }

    /// Drops every flush the writer's last commit holds: readers find them in any
    /// snapshot opened from now on. Called by the writer after each commit.
    pub fn release_committed(&self) {
        let through = self.written_through.load(Ordering::Relaxed);
        let mut tail = self.lock();
        while tail.kept.front().is_some_and(|kept| kept.id <= through) {
            tail.kept.pop_front();
        }
    }

    /// The flushes not yet released, oldest first. Take it before opening the
    /// snapshot it completes (module comment). Cost: one lock and a copy of one
    /// pointer per queued flush.
    pub fn view(&self) -> Vec<Arc<Kept>> {
        self.lock().kept.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        // A panic while the lock was held left the tail whole (each step is one push
        // or pops), so a poisoned lock is still good.
        self.tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: Retention = Retention {
        max_messages: 10,
        max_age_ms: u64::MAX,
    };

    #[test]
    fn a_flush_the_writer_refuses_is_not_in_the_tail_and_takes_no_number() {
        let tail = UncommittedHistory::after(41);
        let refused = tail.hand_over(Vec::new(), RETENTION, |_| Err(WriteRefused::Behind));
        assert!(refused.is_err());
        assert!(tail.view().is_empty());
        tail.hand_over(Vec::new(), RETENTION, |kept| {
            assert_eq!(kept.id, 42);
            Ok(())
        })
        .expect("queued");
        assert_eq!(tail.view().len(), 1);
    }

    #[test]
    fn a_commit_releases_the_flushes_it_holds_and_no_later_one() {
        let tail = UncommittedHistory::after(0);
        for _ in 0..3 {
            tail.hand_over(Vec::new(), RETENTION, |_| Ok(()))
                .expect("queued");
        }
        tail.written(2);
        tail.release_committed();
        let left: Vec<u64> = tail.view().iter().map(|kept| kept.id).collect();
        assert_eq!(left, [3]);
    }
}
