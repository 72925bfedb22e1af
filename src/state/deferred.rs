//! Replies built off the shard (a CHATHISTORY answer, read by one of the store's
//! reader threads) on their way back to the asker's shard: one channel per shard,
//! and the bus's wake-up so the shard takes them in on its next pass.
//!
//! Contract: a sender MUST NOT block (the channel is unbounded; what bounds it is
//! the store readers' queue, which refuses past its length, and the flood tokens
//! each query costs its client). The shard drains its channel whenever it pumps; a reply
//! for a client that has gone meanwhile is dropped.

use super::bus::Bus;
use super::ClientId;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Lines for one client, already formatted for its capabilities.
#[derive(Debug)]
pub struct DeferredReply {
    /// The client that asked.
    pub to: ClientId,
    /// Its lines, in order.
    pub lines: Vec<Bytes>,
}

/// Every shard's mailbox; each shard takes its receiving end once.
#[derive(Debug)]
pub struct Mailboxes {
    senders: Vec<Sender<DeferredReply>>,
    /// Per shard: a reply was sent since the shard last looked (so a shard's pass
    /// costs one atomic load, not a channel poll, while nothing comes).
    pending: Vec<Arc<AtomicBool>>,
    receivers: Mutex<Vec<Option<Mailbox>>>,
    bus: Arc<Bus>,
}

/// One shard's receiving end.
#[derive(Debug)]
pub struct Mailbox {
    receiver: Receiver<DeferredReply>,
    pending: Arc<AtomicBool>,
}

impl Mailbox {
    /// The next reply, if one came. Cost while none came: one atomic load.
    pub fn next(&self) -> Option<DeferredReply> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        match self.receiver.try_recv() {
            Ok(reply) => Some(reply),
            Err(_) => {
                // Cleared only when empty; a reply sent after this sets it again.
                self.pending.store(false, Ordering::Release);
                self.receiver.try_recv().ok()
            }
        }
    }
}

impl Mailboxes {
    /// Mailboxes for `shards` shards, woken through `bus`.
    pub fn new(shards: usize, bus: Arc<Bus>) -> Mailboxes {
        let mut senders = Vec::with_capacity(shards);
        let mut pending = Vec::with_capacity(shards);
        let mut receivers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (sender, receiver) = mpsc::channel();
            let flag = Arc::new(AtomicBool::new(false));
            senders.push(sender);
            pending.push(flag.clone());
            receivers.push(Some(Mailbox {
                receiver,
                pending: flag,
            }));
        }
        Mailboxes {
            senders,
            pending,
            receivers: Mutex::new(receivers),
            bus,
        }
    }

    /// Shard `shard`'s receiving end; `None` if it was taken already.
    pub fn take_receiver(&self, shard: u16) -> Option<Mailbox> {
        self.receivers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_mut(shard as usize)?
            .take()
    }

    /// A handle that sends one reply to `shard` from any thread. It holds the bus,
    /// not the shared state, so a store job holding it never keeps the store alive.
    pub fn to_shard(&self, shard: u16) -> Option<ReplySender> {
        Some(ReplySender {
            sender: self.senders.get(shard as usize)?.clone(),
            pending: self.pending.get(shard as usize)?.clone(),
            bus: self.bus.clone(),
            shard,
        })
    }
}

/// Sends a reply to one shard and wakes it.
#[derive(Debug)]
pub struct ReplySender {
    sender: Sender<DeferredReply>,
    pending: Arc<AtomicBool>,
    bus: Arc<Bus>,
    shard: u16,
}

impl ReplySender {
    /// Queues `reply` and wakes its shard. A shard that has stopped drops it.
    pub fn send(self, reply: DeferredReply) {
        if self.sender.send(reply).is_ok() {
            self.pending.store(true, Ordering::Release);
            self.bus.wake(self.shard);
        }
    }
}
