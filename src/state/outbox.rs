//! A connection's send queue: lines waiting to be written, counted against the sendq.
//!
//! Contract (the rules every driver and handler relies on):
//! - Producers MUST only [`Outbox::push`]; the only bound is `sendq` bytes, and a push
//!   past it fails with [`SendQueueExceeded`] without queueing (the caller disconnects
//!   that one client; nobody else waits).
//! - Exactly one writer per connection MUST take lines with [`Outbox::take_batch`] and
//!   report what the kernel accepted with [`Outbox::wrote`]. Bytes stay counted against
//!   the sendq until written, so a slow reader's in-flight batch still counts.
//! - A push MUST NOT copy or allocate per line: a line is a shared `Bytes`, and the
//!   queue keeps a small capacity across writes so a quiet client's next line does not
//!   allocate either.
//! - An idle outbox (its writer parked) MUST NOT hold more than [`IDLE_CAPACITY`]
//!   slots.

use bytes::Bytes;
use std::collections::VecDeque;
use std::task::Waker;

/// Slots kept when the queue drains: enough that low-rate traffic never allocates,
/// small enough (4 × 32 bytes) that idle connections stay cheap.
pub const IDLE_CAPACITY: usize = 4;

/// Slots a queue grows to at once when its idle few fill up (2 KiB).
const BUSY_CAPACITY: usize = 64;

/// Most lines carried by one vectored write (the kernel allows 1024 iovecs).
pub const MAX_BATCH_LINES: usize = 256;
/// Spare write batches a shard keeps (each 256 × 32 bytes).
const MAX_SPARE_BATCHES: usize = 64;

/// Spare write batches: a writer borrows one while it has lines to write and gives it
/// back once everything is written, so idle connections hold no batch
/// (docs/architecture.md invariant 9). One pool per shard.
#[derive(Debug, Default)]
pub struct BatchPool {
    spare: Vec<Vec<Bytes>>,
}

impl BatchPool {
    /// An empty batch with room for [`MAX_BATCH_LINES`] lines.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX_BATCH_LINES))
    }

    /// Takes back an empty batch, keeping at most a few spare.
    pub fn give_back(&mut self, batch: Vec<Bytes>) {
        if batch.is_empty() && self.spare.len() < MAX_SPARE_BATCHES {
            self.spare.push(batch);
        }
    }
}

/// The queue would pass the client's sendq: the client is a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SendQ exceeded")]
pub struct SendQueueExceeded;

/// Lines queued for one connection; see the module contract.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
    /// Bytes pushed and not yet reported written (queued plus in flight).
    unwritten: usize,
    /// The writer task, parked until there is something to write.
    writer: Option<Waker>,
    /// The last line (the final ERROR) is queued: the connection is closing.
    finished: bool,
    /// A line meant for this client alone (a reply, a private message) waits: its
    /// writer goes ahead of the writers of a big fan-out's backlog.
    urgent: bool,
}

impl Outbox {
    /// Queues `line` unless that would pass `sendq` bytes unwritten; wakes the writer.
    #[inline(always)]
    pub fn push(&mut self, line: Bytes, sendq: usize) -> Result<(), SendQueueExceeded> {
        if self.unwritten + line.len() > sendq {
            return Err(SendQueueExceeded);
        }
        self.unwritten += line.len();
        if self.queue.len() == self.queue.capacity() {
            self.grow();
        }
        self.queue.push_back(line);
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
        Ok(())
    }

    /// Makes room for one more line: straight from the idle few slots to a busy size.
    /// A member flood fills a parked member's queue with a turn's lines, and doubling
    /// from four took five reallocations (a twelfth of the server's CPU); a quiet
    /// client's first lines still get only the idle few.
    #[cold]
    fn grow(&mut self) {
        let busy = self.queue.len() >= IDLE_CAPACITY;
        let more = if busy {
            self.queue.len().max(BUSY_CAPACITY)
        } else {
            1
        };
        self.queue.reserve(more);
    }

    /// Queues the connection's last line (the final `ERROR`), even past the sendq, and
    /// wakes the writer to flush and shut the socket. Only the first call counts.
    pub fn finish(&mut self, last: Bytes) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.unwritten += last.len();
        self.queue.push_back(last);
        self.wake_writer();
    }

    /// Whether the last line has been queued.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Marks what is queued as urgent: it holds a line meant for this client alone.
    pub fn mark_urgent(&mut self) {
        self.urgent = true;
    }

    /// Whether a line meant for this client alone waits to be taken.
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Moves up to `max_lines` queued lines to the end of `batch` for one vectored write.
    pub fn take_batch(&mut self, batch: &mut Vec<Bytes>, max_lines: usize) {
        self.urgent = false;
        let room = max_lines.saturating_sub(batch.len());
        let count = room.min(self.queue.len());
        batch.extend(self.queue.drain(..count));
    }

    /// Records that the kernel accepted `bytes` of taken lines.
    pub fn wrote(&mut self, bytes: usize) {
        self.unwritten = self.unwritten.saturating_sub(bytes);
    }

    /// How many lines wait to be taken; a mark for [`Outbox::take_since`].
    pub fn queued_lines(&self) -> usize {
        self.queue.len()
    }

    /// Takes back the lines queued after `mark` (none were taken since: the caller
    /// runs between two writer turns), to be rewritten and pushed again.
    pub fn take_since(&mut self, mark: usize) -> Vec<Bytes> {
        let taken: Vec<Bytes> = self.queue.drain(mark.min(self.queue.len())..).collect();
        self.unwritten -= taken.iter().map(Bytes::len).sum::<usize>();
        taken
    }

    /// The lines waiting to be taken, in order (a live upgrade's capture).
    pub fn queued(&self) -> impl Iterator<Item = &Bytes> {
        self.queue.iter()
    }

    /// Puts lines a writer had taken but not written back in front of the queue
    /// (a live upgrade stopped the write): they were never reported written, so the
    /// sendq count already holds them.
    pub fn put_back(&mut self, lines: impl DoubleEndedIterator<Item = Bytes>) {
        for line in lines.rev() {
            self.queue.push_front(line);
        }
    }

    /// Queues a handed-over client's unwritten output, counted against its sendq.
    pub fn restore(&mut self, lines: Vec<Bytes>) {
        self.unwritten = lines.iter().map(Bytes::len).sum();
        self.queue = lines.into();
    }

    /// Whether lines are waiting to be taken.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Bytes pushed and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Drops everything queued (a slow consumer's backlog); in-flight bytes still count
    /// until the writer reports them.
    pub fn discard_queued(&mut self) {
        let dropped: usize = self.queue.iter().map(Bytes::len).sum();
        self.unwritten -= dropped;
        self.queue = VecDeque::new();
    }

    /// Parks the writer until the next push (or [`Outbox::wake_writer`]); an empty
    /// queue gives back its capacity here, when the connection goes idle, not at
    /// every write: a busy member's queue drained by each write would otherwise be
    /// grown again from [`IDLE_CAPACITY`] slots by the next turn's lines (a member
    /// flood spent a twentieth of its CPU in that reallocation).
    pub fn park_writer(&mut self, waker: &Waker) {
        if self.queue.is_empty() && self.queue.capacity() > IDLE_CAPACITY {
            self.queue = VecDeque::with_capacity(IDLE_CAPACITY);
        }
        match &mut self.writer {
            Some(parked) => parked.clone_from(waker),
            None => self.writer = Some(waker.clone()),
        }
    }

    /// Wakes the writer without queueing anything (the connection is closing).
    pub fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn a_push_past_the_sendq_fails_and_queues_nothing() {
        let mut outbox = Outbox::default();
        outbox.push(line("12345"), 8).expect("fits");
        assert_eq!(outbox.push(line("6789"), 8), Err(SendQueueExceeded));
        assert_eq!(outbox.unwritten(), 5);
    }

    #[test]
    fn taken_bytes_count_until_written() {
        let mut outbox = Outbox::default();
        outbox.push(line("aaaa"), 8).expect("fits");
        let mut batch = Vec::new();
        outbox.take_batch(&mut batch, 16);
        assert_eq!(batch.len(), 1);
        assert_eq!(outbox.push(line("bbbbb"), 8), Err(SendQueueExceeded));
        outbox.wrote(4);
        outbox.push(line("bbbbb"), 8).expect("room after the write");
    }

    #[test]
    fn a_batch_takes_at_most_max_lines_in_order() {
        let mut outbox = Outbox::default();
        for i in 0..10 {
            outbox.push(line(&i.to_string()), 100).expect("fits");
        }
        let mut batch = vec![line("held")];
        outbox.take_batch(&mut batch, 4);
        assert_eq!(batch, vec![line("held"), line("0"), line("1"), line("2")]);
        assert!(outbox.has_queued());
    }

    #[test]
    fn a_drained_queue_keeps_its_capacity_until_the_writer_parks() {
        let mut outbox = Outbox::default();
        for _ in 0..1000 {
            outbox.push(line("x"), usize::MAX).expect("fits");
        }
        outbox.take_batch(&mut Vec::new(), usize::MAX);
        assert!(
            outbox.queue.capacity() >= 1000,
            "busy: the next turn reuses it"
        );
        outbox.park_writer(std::task::Waker::noop());
        assert!(outbox.queue.capacity() <= IDLE_CAPACITY);
    }

    #[test]
    fn a_push_wakes_the_parked_writer() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let mut outbox = Outbox::default();
        outbox.park_writer(&Waker::from(flag.clone()));
        outbox.push(line("x"), 10).expect("fits");
        assert!(flag.0.load(Ordering::SeqCst));
    }
}
