//! The event log: the one total order of network-state changes, and the one writer
//! of the node's network replica.
//!
//! Contract:
//! - Any shard MAY append ([`EventLog::append`]); appends are serialized by one short
//!   lock, which is what makes the order total. Appending applies the event to the
//!   newest version of the replica ([`Network::apply`]: pure, O(log n), never
//!   O(members)) and publishes the entry with its outcome and the version after it.
//!   It is the only lock on network state, and only state changes (NICK, JOIN,
//!   MODE, ...) take it: channel messages and every query never do.
//! - Readers ([`LogReader`], one per shard) MUST NOT block: they read published
//!   entries lock-free, in order, each at their own pace, and each reads the replica
//!   as of the last entry it took in ([`LogReader::network`]): what a shard reads
//!   agrees with what it has told its clients, exactly as if it had applied the log
//!   itself. An event is applied once per node, however many shards read it.
//! - If a reader has seen entry `n`, every other reader that learns of it through a
//!   happens-before edge (a hand-off, say) can read entries `1..=n` at once: entries
//!   are published in order, so "catch up to `n`" never waits.
//! - Memory: entries live in chunks of [`CHUNK_LEN`]; a chunk is freed when the
//!   slowest reader has moved past it. The log is bounded by how far the slowest shard
//!   lags, and shards take entries in as soon as they are woken. The versions the
//!   entries hold share all but the paths their events changed.

use super::network::{Event, Network, Outcome, Sequenced};
use std::sync::{Arc, Mutex, OnceLock};

/// One published entry: the event in its place, what applying it did, and the
/// replica after it.
#[derive(Debug)]
pub struct Entry {
    /// The event, its number and its proposer.
    pub event: Sequenced,
    /// What applying it did; the proposer answers from it, every shard renders it.
    pub outcome: Outcome,
    /// The node's replica after this entry (immutable; shared with its neighbours).
    pub network: Arc<Network>,
    /// When this node applied it: the `server-time` its lines carry on every shard
    /// (where history is kept), so a replayed event is the line members saw.
    pub at: std::time::SystemTime,
}

impl std::ops::Deref for Entry {
    type Target = Sequenced;

    fn deref(&self) -> &Sequenced {
        &self.event
    }
}

/// Entries per chunk. Small, because a chunk keeps the replica's versions of all its
/// entries alive until the slowest reader has passed it: each holds the paths its
/// event copied (a few KiB at 10,000 users), so an idle log's last chunk of 256
/// entries held about 2 MiB; 32 hold a eighth of that, for one chunk allocation
/// every 32 appends.
pub const CHUNK_LEN: usize = 32;

/// A run of consecutive entries.
struct Chunk {
    /// The sequence number of `slots[0]`.
    first: u64,
    slots: Box<[OnceLock<Arc<Entry>>]>,
    next: OnceLock<Arc<Chunk>>,
}

impl Chunk {
    fn new(first: u64) -> Arc<Chunk> {
        Arc::new(Chunk {
            first,
            slots: (0..CHUNK_LEN).map(|_| OnceLock::new()).collect(),
            next: OnceLock::new(),
        })
    }
}

/// Where the next append goes, and the newest replica; only touched under the log's
/// lock.
struct Tail {
    chunk: Arc<Chunk>,
    next_seq: u64,
    network: Arc<Network>,
}

/// The shared log; see the module contract.
pub struct EventLog {
    tail: Mutex<Tail>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    /// A log that continues from `network` (empty, or a cluster snapshot of the state
    /// after entry `network.applied()`, whose numbering it continues), and `readers`
    /// readers positioned there (one per shard). The log itself keeps only its tail,
    /// so chunks are freed as soon as every reader has passed them.
    pub fn starting_from(network: Network, readers: usize) -> (EventLog, Vec<LogReader>) {
        let next_seq = network.applied() + 1;
        let network = Arc::new(network);
        let first = Chunk::new(next_seq);
        let readers = (0..readers)
            .map(|_| LogReader {
                chunk: first.clone(),
                next_seq,
                network: network.clone(),
            })
            .collect();
        let log = EventLog {
            tail: Mutex::new(Tail {
                chunk: first,
                next_seq,
                network,
            }),
        };
        (log, readers)
    }

    /// The newest version of the replica (the cluster link's snapshots and start-up
    /// checks: on a cluster node the link is the only appender, so this is the
    /// version after its last append). Takes the append lock for a reference-count
    /// increment.
    pub fn latest(&self) -> Arc<Network> {
        self.tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .network
            .clone()
    }

    /// Appends `event` proposed by shard `origin` at `at_unix` and applies it; returns
    /// its sequence number. The lock is held for the apply (O(log n) map operations,
    /// copying the changed paths of the replica: a few microseconds) and one slot
    /// write (and, every [`CHUNK_LEN`] entries, one chunk allocation).
    pub fn append(&self, origin: u16, at_unix: u64, event: Event) -> u64 {
        self.append_proposal(origin, 0, at_unix, event)
    }

    /// [`EventLog::append`] with the proposer's proposal number (a cluster node's
    /// link appends what the cluster ordered; the number lets the proposing shard
    /// find its entry).
    pub fn append_proposal(&self, origin: u16, proposal: u64, at_unix: u64, event: Event) -> u64 {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = tail.next_seq;
        let mut index = (seq - tail.chunk.first) as usize;
        if index == CHUNK_LEN {
            let next = Chunk::new(seq);
            let _ = tail.chunk.next.set(next.clone());
            tail.chunk = next;
            index = 0;
        }
        let event = Sequenced {
            proposal,
            seq,
            origin,
            at_unix,
            event,
        };
        // Copies the version's root (its maps are shared, O(1)) when readers hold it.
        let outcome = Arc::make_mut(&mut tail.network).apply(&event);
        let entry = Arc::new(Entry {
            event,
            outcome,
            network: tail.network.clone(),
            at: std::time::SystemTime::now(),
        });
        let _ = tail.chunk.slots[index].set(entry);
        tail.next_seq = seq + 1;
        seq
    }
}

/// One shard's position in the log, and the replica as of that position; see the
/// module contract.
pub struct LogReader {
    chunk: Arc<Chunk>,
    next_seq: u64,
    network: Arc<Network>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// Yields the published entries in order; `None` means "nothing more yet", not the
/// end: a later call may yield more.
impl Iterator for LogReader {
    type Item = Arc<Entry>;

    /// The next published entry, if any; the reader's replica becomes the entry's.
    /// Lock-free: one acquire load.
    fn next(&mut self) -> Option<Arc<Entry>> {
        let mut index = (self.next_seq - self.chunk.first) as usize;
        if index == CHUNK_LEN {
            let next = self.chunk.next.get()?.clone();
            self.chunk = next;
            index = 0;
        }
        let entry = self.chunk.slots[index].get()?.clone();
        self.next_seq += 1;
        self.network = entry.network.clone();
        Some(entry)
    }
}

impl LogReader {
    /// The replica as of the last entry this reader took in.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// The next published entry, if any, without taking it in.
    pub fn peek(&self) -> Option<&Arc<Entry>> {
        let index = (self.next_seq - self.chunk.first) as usize;
        if index == CHUNK_LEN {
            return self.chunk.next.get()?.slots[0].get();
        }
        self.chunk.slots[index].get()
    }

    /// Whether an entry is ready to be read.
    pub fn has_next(&self) -> bool {
        let index = (self.next_seq - self.chunk.first) as usize;
        if index == CHUNK_LEN {
            return self
                .chunk
                .next
                .get()
                .is_some_and(|next| next.slots[0].get().is_some());
        }
        self.chunk.slots[index].get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::slab::SlotKey;
    use crate::state::ClientId;

    fn event(i: u32) -> Event {
        Event::ReleaseNick {
            client: ClientId {
                node: 0,
                shard: 0,
                slot: SlotKey {
                    index: i,
                    generation: 0,
                },
            },
        }
    }

    #[test]
    fn readers_see_every_entry_in_order_across_chunks() {
        let (log, readers) = EventLog::starting_from(Network::new(1), 2);
        let mut readers = readers.into_iter();
        let (mut early, mut late) = (readers.next().expect("one"), readers.next().expect("two"));
        let count = CHUNK_LEN as u64 * 3 + 7;
        for i in 0..count {
            assert_eq!(log.append((i % 2) as u16, 0, event(i as u32)), i + 1);
        }
        for reader in [&mut early, &mut late] {
            let seqs: Vec<u64> = std::iter::from_fn(|| reader.next())
                .map(|e| e.seq)
                .collect();
            assert_eq!(seqs, (1..=count).collect::<Vec<_>>());
            assert!(!reader.has_next());
        }
        log.append(0, 0, event(0));
        assert!(early.has_next());
    }

    #[test]
    fn appends_from_many_threads_form_one_gapless_order() {
        let (log, mut readers) = EventLog::starting_from(Network::new(1), 1);
        let log = Arc::new(log);
        let reader = readers.pop().expect("one reader");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        log.append(t, 0, event(i));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("appender");
        }
        let mut per_origin = [0u32; 4];
        for (expected_seq, entry) in (1..).zip(reader) {
            assert_eq!(entry.seq, expected_seq);
            let Event::ReleaseNick { client } = &entry.event.event else {
                panic!("only ReleaseNick was appended");
            };
            assert_eq!(client.slot.index, per_origin[entry.origin as usize]);
            per_origin[entry.origin as usize] += 1;
        }
        assert_eq!(
            per_origin, [500; 4],
            "every append, each origin in its order"
        );
    }
}
