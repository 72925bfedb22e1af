//! The cross-shard bus: one inbox per shard, fed in batches.
//!
//! Contract:
//! - A shard MUST hand a message to another shard at most once, however many members
//!   live there; the receiver fans it out locally.
//! - Hand-offs from one shard to another MUST arrive in the order sent (one FIFO inbox
//!   per receiver, appended under its lock), which keeps per-sender order across shards.
//! - Senders SHOULD batch: a shard collects a tick's hand-offs per destination and
//!   appends each batch with one lock and one wake-up ([`Bus::send_batch`]).
//! - The inbox is bounded in practice by what senders may produce: flood control and
//!   each recipient's sendq (a receiver drops a slow consumer, never the hand-off).

use super::outgoing::Outgoing;
use crate::proto::CaselessKey;
use crate::state::ClientId;
use std::sync::Mutex;
use tokio::sync::Notify;

/// One unit of work for another shard.
#[derive(Debug, Clone)]
pub enum Handoff {
    /// Deliver `message` to the shard's local members of `channel`, except `except`.
    Channel {
        /// The channel.
        channel: CaselessKey,
        /// The message, with the variants serialized so far.
        message: Outgoing,
        /// The sender, when it must not get its own message.
        except: Option<ClientId>,
    },
    /// Deliver `message` once to every local member of any of `channels` (QUIT, NICK).
    Channels {
        /// The channels whose members see the line.
        channels: Box<[CaselessKey]>,
        /// The message.
        message: Outgoing,
        /// The client the line is about, who must not get it this way.
        except: Option<ClientId>,
    },
    /// Deliver `message` to one client of the receiving shard.
    Client {
        /// The recipient.
        to: ClientId,
        /// The message.
        message: Outgoing,
    },
    /// A local client was removed from `channel` by someone else (KICK): forget it in
    /// the local member index. Sent after the line announcing it, in the same FIFO.
    RemoveMember {
        /// The channel.
        channel: CaselessKey,
        /// The member that is gone.
        member: ClientId,
    },
    /// Begin a graceful shutdown.
    Shutdown,
}

/// One shard's inbox.
#[derive(Debug, Default)]
struct Inbox {
    queue: Mutex<Vec<Handoff>>,
    ready: Notify,
}

/// Every shard's inbox; see the module contract.
#[derive(Debug)]
pub struct Bus {
    inboxes: Box<[Inbox]>,
}

impl Bus {
    /// A bus for `shards` shards.
    pub fn new(shards: usize) -> Bus {
        Bus {
            inboxes: (0..shards).map(|_| Inbox::default()).collect(),
        }
    }

    /// Appends `batch` to shard `to`'s inbox (leaving `batch` empty, capacity kept)
    /// and wakes that shard: one lock and one wake-up per batch.
    pub fn send_batch(&self, to: u16, batch: &mut Vec<Handoff>) {
        let Some(inbox) = self.inboxes.get(to as usize) else {
            return;
        };
        lock(&inbox.queue).append(batch);
        inbox.ready.notify_one();
    }

    /// Sends one hand-off to every shard (shutdown).
    pub fn broadcast(&self, handoff: Handoff) {
        for (shard, _) in self.inboxes.iter().enumerate() {
            self.send_batch(shard as u16, &mut vec![handoff.clone()]);
        }
    }

    /// Waits until shard `me` has hand-offs, then swaps them into `into` (which must
    /// be empty; its capacity is reused for the next batch).
    pub async fn receive(&self, me: u16, into: &mut Vec<Handoff>) {
        let Some(inbox) = self.inboxes.get(me as usize) else {
            return;
        };
        while !self.try_receive(me, into) {
            inbox.ready.notified().await;
        }
    }

    /// Swaps shard `me`'s pending hand-offs into `into` without waiting; false if
    /// there were none.
    pub fn try_receive(&self, me: u16, into: &mut Vec<Handoff>) -> bool {
        let Some(inbox) = self.inboxes.get(me as usize) else {
            return false;
        };
        let mut queue = lock(&inbox.queue);
        if queue.is_empty() {
            return false;
        }
        std::mem::swap(&mut *queue, into);
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
