//! Replies built off the shard (a CHATHISTORY answer, read by the store's writer
//! thread) on their way back to the asker's shard: one channel per shard, and the
//! bus's wake-up so the shard takes them in on its next pass.
//!
//! Contract: a sender MUST NOT block (the channel is unbounded; what bounds it is
//! the store's job queue, which refuses past its length, and the flood tokens each
//! query costs its client). The shard drains its channel whenever it pumps; a reply
//! for a client that has gone meanwhile is dropped.

use super::bus::Bus;
use super::ClientId;
use bytes::Bytes;
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
    receivers: Mutex<Vec<Option<Receiver<DeferredReply>>>>,
    bus: Arc<Bus>,
}

impl Mailboxes {
    /// Mailboxes for `shards` shards, woken through `bus`.
    pub fn new(shards: usize, bus: Arc<Bus>) -> Mailboxes {
        let (senders, receivers) = (0..shards)
            .map(|_| {
                let (sender, receiver) = mpsc::channel();
                (sender, Some(receiver))
            })
            .unzip();
        Mailboxes {
            senders,
            receivers: Mutex::new(receivers),
            bus,
        }
    }

    /// Shard `shard`'s receiving end; `None` if it was taken already.
    pub fn take_receiver(&self, shard: u16) -> Option<Receiver<DeferredReply>> {
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
            bus: self.bus.clone(),
            shard,
        })
    }
}

/// Sends a reply to one shard and wakes it.
#[derive(Debug)]
pub struct ReplySender {
    sender: Sender<DeferredReply>,
    bus: Arc<Bus>,
    shard: u16,
}

impl ReplySender {
    /// Queues `reply` and wakes its shard. A shard that has stopped drops it.
    pub fn send(self, reply: DeferredReply) {
        if self.sender.send(reply).is_ok() {
            self.bus.wake(self.shard);
        }
    }
}
