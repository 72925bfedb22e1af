//! The cross-shard bus: a lock-free single-producer queue of hand-off batches for
//! every ordered pair of shards, and one wake-up per shard.
//!
//! Contract:
//! - A shard MUST hand a message to another shard at most once, however many members
//!   live there; the receiver fans it out locally.
//! - Hand-offs from one shard to another MUST arrive in the order sent (one FIFO link
//!   per pair), which keeps per-sender order across shards.
//! - Senders batch: a shard collects a scheduler pass's hand-offs per destination and
//!   pushes each batch as one entry ([`Outlink::send`]: one release store) followed by
//!   at most one wake-up. Nothing on this path takes a lock.
//! - Every hand-off is stamped with the sender's log position when it was made
//!   ([`Stamped::after`]); the receiver applies the log at least that far before
//!   handling it, and handles a sender's hand-offs stamped before one of that
//!   sender's events before applying that event. So a client's message and its own
//!   JOIN, PART or NICK reach every other shard in the order the client sent them.
//! - Bounds: each link holds at most [`LINK_BATCHES`] batches. A batch that does not
//!   fit stays with the sender and is retried on its next pass (nothing is dropped);
//!   a sender whose pending hand-offs to one shard pass
//!   [`MAX_PENDING_HANDOFFS`] stops reading its clients' input until they drain.
//! - Batch vectors travel back on a return link and are reused, so a steady stream
//!   of hand-offs allocates nothing.
//! - A wake-up reaches a shard however its driver waits: the tokio drivers await a
//!   `Notify`; a completion-loop driver (`--io ring`) attaches an eventfd that it
//!   keeps a read on in its ring, so it is woken inside `io_uring_enter`. Eventfd
//!   wake-ups coalesce: one write until the shard takes the wake-up.

use crate::proto::outgoing::Outgoing;
use crate::proto::CaselessKey;
use crate::state::network::{Event, ShardSet};
use crate::state::ClientId;
use crate::store::history::Kind;
use rtrb::{Consumer, Producer, RingBuffer};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::sync::Notify;

/// Batches a link holds before the sender keeps further batches itself.
pub const LINK_BATCHES: usize = 256;
/// Hand-offs one shard may owe another before it pauses reading client input.
pub const MAX_PENDING_HANDOFFS: usize = 64 * 1024;

/// One unit of work for another shard.
#[derive(Debug, Clone)]
pub enum Handoff {
    /// Deliver `message` to the receiving shard's members of `channel`, except
    /// `except`.
    Channel {
        /// The channel.
        channel: CaselessKey,
        /// The message, with the variants serialized so far.
        message: Outgoing,
        /// The sender, when it must not get its own message.
        except: Option<ClientId>,
    },
    /// Deliver `message` to one client of the receiving shard (to the cluster link:
    /// of the recipient's node).
    Client {
        /// The recipient.
        to: ClientId,
        /// The message.
        message: Outgoing,
        /// To the cluster link: a direct message the recipient's node keeps in the
        /// conversation's history, as the sender's shard did. `None` between shards
        /// of one node (the sender's shard keeps it for the node).
        kept: Option<KeptDirect>,
    },
    /// To the cluster link: deliver `message` to `channel`'s members on each node in
    /// `nodes` (one cross-node message per node). A message kept in history goes to
    /// every live node, and those without members only keep it.
    Nodes {
        /// Node numbers.
        nodes: ShardSet,
        /// The channel.
        channel: CaselessKey,
        /// The message.
        message: Outgoing,
        /// The sender, when it must not get its own message.
        except: Option<ClientId>,
        /// How every receiving node keeps it in the channel's history, as the
        /// sender's shard did (`None`: not kept, a STATUSMSG or no history).
        kept: Option<Kind>,
    },
    /// To the cluster link: have the cluster order `event`, proposed by the sending
    /// shard as its `proposal`-th.
    Propose {
        /// The shard's number for it, echoed in the log entry.
        proposal: u64,
        /// Wall-clock time of the proposal in Unix seconds.
        at_unix: u64,
        /// The change.
        event: Box<Event>,
    },
    /// From the cluster link: tell every local registered user `text` in a server
    /// NOTICE (the cluster connection was lost or is back).
    Notice {
        /// The notice.
        text: Box<str>,
    },
    /// From the cluster link: the cluster could not be reached, so `proposal` was not
    /// ordered and will not be applied.
    Unordered {
        /// The shard's number for the proposal.
        proposal: u64,
    },
}

/// A direct message's place in the recipient's node's history: the conversation of
/// `from` and the recipient, which that node finds in its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptDirect {
    /// The sender.
    pub from: ClientId,
    /// PRIVMSG/NOTICE or TAGMSG.
    pub kind: Kind,
}

/// A hand-off and the sender's log position when it was made.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// The last log entry the sender had applied.
    pub after: u64,
    /// The work.
    pub handoff: Handoff,
}

/// A batch of hand-offs from one shard to another, handled from the front.
pub type Batch = std::collections::VecDeque<Stamped>;

/// The sending end of one shard pair's link.
pub struct Outlink {
    batches: Producer<Batch>,
    returned: Consumer<Batch>,
}

impl Outlink {
    /// Pushes `pending` as one batch, leaving an empty (reused) vector in its place;
    /// `false` if the link is full (then `pending` is untouched).
    pub fn send(&mut self, pending: &mut Batch) -> bool {
        if self.batches.is_full() {
            return false;
        }
        let spare = self.returned.pop().unwrap_or_default();
        let batch = std::mem::replace(pending, spare);
        match self.batches.push(batch) {
            Ok(()) => true,
            Err(rtrb::PushError::Full(batch)) => {
                *pending = batch;
                false
            }
        }
    }
}

/// The receiving end of one shard pair's link.
pub struct Inlink {
    batches: Consumer<Batch>,
    returned: Producer<Batch>,
}

impl Inlink {
    /// The oldest batch not yet received.
    pub fn receive(&mut self) -> Option<Batch> {
        self.batches.pop().ok()
    }

    /// Gives an emptied batch back to the sender for reuse.
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        let _ = self.returned.push(batch);
    }
}

/// One shard's ends of every link, indexed by the other shard's number (`None` at
/// its own).
pub struct Links {
    /// To each other shard.
    pub to: Vec<Option<Outlink>>,
    /// From each other shard.
    pub from: Vec<Option<Inlink>>,
}

impl Links {
    /// Sends each pending batch in `outgoing` (indexed by destination) to its
    /// endpoint: one push and at most one wake-up per destination. A batch that
    /// does not fit (the receiver is far behind) stays and is retried on the next
    /// pass; one for an endpoint without a link is dropped. Returns the batches sent.
    pub fn send_pending(&mut self, outgoing: &mut [Batch], bus: &Bus) -> u64 {
        let mut sent = 0;
        for (to, batch) in outgoing.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let Some(link) = self.to.get_mut(to).and_then(Option::as_mut) else {
                batch.clear();
                continue;
            };
            if link.send(batch) {
                sent += 1;
                bus.wake(to as u16);
            }
        }
        sent
    }
}

/// Every link and every shard's wake-up; see the module contract.
pub struct Bus {
    wake: Box<[Notify]>,
    /// Each shard's eventfd, when its driver waits in a ring rather than on `wake`.
    wake_fds: Box<[OnceLock<File>]>,
    /// Per shard: an eventfd write is owed to a wake-up not yet taken (coalescing).
    wake_pending: Box<[AtomicBool]>,
    /// Each shard's ends, taken once by the shard when it is built.
    links: Mutex<Vec<Option<Links>>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("shards", &self.wake.len())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Links between every pair of `shards` shards.
    pub fn new(shards: usize) -> Bus {
        let mut links: Vec<Links> = (0..shards)
            .map(|_| Links {
                to: (0..shards).map(|_| None).collect(),
                from: (0..shards).map(|_| None).collect(),
            })
            .collect();
        for from in 0..shards {
            for to in (0..shards).filter(|&to| to != from) {
                let (batches_in, batches_out) = RingBuffer::new(LINK_BATCHES);
                let (returned_in, returned_out) = RingBuffer::new(LINK_BATCHES);
                links[from].to[to] = Some(Outlink {
                    batches: batches_in,
                    returned: returned_out,
                });
                links[to].from[from] = Some(Inlink {
                    batches: batches_out,
                    returned: returned_in,
                });
            }
        }
        Bus {
            wake: (0..shards).map(|_| Notify::new()).collect(),
            wake_fds: (0..shards).map(|_| OnceLock::new()).collect(),
            wake_pending: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            links: Mutex::new(links.into_iter().map(Some).collect()),
        }
    }

    /// Shard `shard`'s ends of its links; `None` if they were taken already.
    pub fn take_links(&self, shard: u16) -> Option<Links> {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_mut(shard as usize)?
            .take()
    }

    /// Wakes shard `shard` (it has hand-offs, log entries, or must shut down). Wakes
    /// coalesce: a shard that is already awake or already woken pays nothing more.
    pub fn wake(&self, shard: u16) {
        let shard = shard as usize;
        if let Some(wake) = self.wake.get(shard) {
            wake.notify_one();
        }
        if let Some(mut eventfd) = self.wake_fds.get(shard).and_then(OnceLock::get) {
            if !self.wake_pending[shard].swap(true, Ordering::AcqRel) {
                // A non-blocking eventfd write fails only if the counter would pass
                // 2^64 - 2, when a wake-up is owed anyway.
                let _ = eventfd.write(&1u64.to_ne_bytes());
            }
        }
    }

    /// Makes shard `shard`'s wake-ups also write `eventfd` (non-blocking), for a
    /// driver that waits in `io_uring_enter` with a read of it in flight. The bus
    /// keeps the descriptor open until it is dropped, after every shard has stopped,
    /// so a read the ring still holds never refers to a closed descriptor.
    /// Returns the descriptor, or `None` if one was attached already.
    pub fn attach_eventfd(&self, shard: u16, eventfd: File) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        let slot = self.wake_fds.get(shard as usize)?;
        let fd = eventfd.as_raw_fd();
        slot.set(eventfd).ok()?;
        Some(fd)
    }

    /// Takes shard `me`'s owed eventfd wake-up (call before pumping): a wake-up after
    /// this writes the eventfd again.
    pub fn take_eventfd_wake(&self, me: u16) {
        if let Some(pending) = self.wake_pending.get(me as usize) {
            pending.store(false, Ordering::Release);
        }
    }

    /// Wakes every shard but `except` (a new log entry).
    pub fn wake_others(&self, except: u16) {
        for shard in (0..self.wake.len() as u16).filter(|&s| s != except) {
            self.wake(shard);
        }
    }

    /// Wakes every shard (shutdown).
    pub fn wake_all(&self) {
        for shard in 0..self.wake.len() as u16 {
            self.wake(shard);
        }
    }

    /// Waits until shard `me` is woken.
    pub async fn woken(&self, me: u16) {
        if let Some(wake) = self.wake.get(me as usize) {
            wake.notified().await;
        }
    }
}
