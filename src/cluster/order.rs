//! Keeping each client's commands in order across nodes, where messages (core NATS)
//! and events (the JetStream stream) travel separately. The same two rules the bus
//! keeps between shards (`crate::state::bus`), between nodes:
//! 1. a message is forwarded to local shards only once this node has appended the
//!    stream entries its sender had applied ([`MessageHeader::after`]): JOIN then
//!    PRIVMSG arrive in that order;
//! 2. an event from node `k` is appended only once every message `k` sent here
//!    before proposing it has arrived ([`EventEnvelope::sent`]): PRIVMSG then PART
//!    arrive in that order.
//!
//! Core NATS delivers one publisher's messages in order, so "arrived" is a count.
//! A message lost by NATS (it is at-most-once) would hold rule 2 forever; the link
//! gives up waiting after a bound and counts the loss ([`Reorder::give_up_on`]).

use super::wire::{EventEnvelope, MessageBody, MessageHeader};
use std::collections::VecDeque;

/// Messages waiting for rule 1, and what has arrived from each node; see the
/// module comment.
#[derive(Debug, Default)]
pub struct Reorder {
    /// Messages arrived from each node (indexed by node number).
    arrived: Vec<u64>,
    /// Messages waiting for their `after`, in arrival order.
    held: VecDeque<(MessageHeader, MessageBody)>,
    /// Messages found missing (a gap in a node's numbering, or given up on).
    pub lost: u64,
}

impl Reorder {
    /// Records a message from another node. A repeated number is dropped (returns
    /// false); a jump counts the skipped numbers as lost.
    pub fn arrive(&mut self, header: MessageHeader, body: MessageBody) -> bool {
        let from = header.from as usize;
        if self.arrived.len() <= from {
            self.arrived.resize(from + 1, 0);
        }
        let seen = self.arrived[from];
        if header.number <= seen {
            return false;
        }
        self.lost += header.number - seen - 1;
        self.arrived[from] = header.number;
        self.held.push_back((header, body));
        true
    }

    /// The held messages that rule 1 lets through once the log holds entries up to
    /// `appended`, oldest first. Stops at the first that must wait, so one sender's
    /// messages never overtake each other.
    pub fn ready(&mut self, appended: u64) -> Vec<(MessageHeader, MessageBody)> {
        let mut ready = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(header, _)| header.after <= appended)
        {
            ready.extend(self.held.pop_front());
        }
        ready
    }

    /// Whether rule 2 lets node `me` append `envelope` now.
    pub fn may_append(&self, envelope: &EventEnvelope, me: u16) -> bool {
        let owed = envelope.sent.get(me as usize).copied().unwrap_or(0);
        self.arrived
            .get(envelope.node as usize)
            .copied()
            .unwrap_or(0)
            >= owed
    }

    /// Stops waiting for messages `envelope`'s node owes: they count as lost.
    pub fn give_up_on(&mut self, envelope: &EventEnvelope, me: u16) {
        let owed = envelope.sent.get(me as usize).copied().unwrap_or(0);
        let from = envelope.node as usize;
        if self.arrived.len() <= from {
            self.arrived.resize(from + 1, 0);
        }
        if self.arrived[from] < owed {
            self.lost += owed - self.arrived[from];
            self.arrived[from] = owed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::outgoing::Outgoing;
    use crate::state::slab::SlotKey;
    use crate::state::ClientId;
    use bytes::Bytes;

    fn message(from: u16, number: u64, after: u64) -> (MessageHeader, MessageBody) {
        let to = ClientId {
            node: 0,
            shard: 0,
            slot: SlotKey {
                index: 1,
                generation: 0,
            },
        };
        (
            MessageHeader {
                from,
                number,
                after,
            },
            MessageBody::Client {
                to,
                message: Outgoing::new(Bytes::from_static(b"PING :x\r\n")).to_wire(),
            },
        )
    }

    fn event_from(node: u16, sent_to_zero: u64) -> EventEnvelope {
        EventEnvelope {
            node,
            shard: 0,
            proposal: 1,
            at_unix: 0,
            published_micros: 0,
            sent: vec![sent_to_zero],
            event: Vec::new(),
        }
    }

    #[test]
    fn a_message_waits_for_the_entries_its_sender_had_applied() {
        let mut order = Reorder::default();
        let (header, body) = message(1, 1, 5);
        assert!(order.arrive(header, body));
        assert!(
            order.ready(4).is_empty(),
            "the JOIN (entry 5) is not here yet"
        );
        assert_eq!(order.ready(5).len(), 1);
    }

    #[test]
    fn an_event_waits_for_the_messages_sent_before_it() {
        let mut order = Reorder::default();
        let part = event_from(1, 2);
        assert!(!order.may_append(&part, 0));
        let (header, body) = message(1, 1, 0);
        order.arrive(header, body);
        assert!(!order.may_append(&part, 0), "one of two arrived");
        let (header, body) = message(1, 2, 0);
        order.arrive(header, body);
        assert!(order.may_append(&part, 0));
        assert!(order.may_append(&event_from(2, 0), 0), "owes nothing");
    }

    #[test]
    fn repeats_are_dropped_and_gaps_counted() {
        let mut order = Reorder::default();
        let (header, body) = message(1, 1, 0);
        assert!(order.arrive(header, body.clone()));
        assert!(!order.arrive(header, body.clone()), "a repeat");
        let (header, body) = message(1, 4, 0);
        assert!(order.arrive(header, body));
        assert_eq!(order.lost, 2);
        let mut stuck = event_from(2, 3);
        order.give_up_on(&stuck, 0);
        assert_eq!(order.lost, 5);
        stuck.sent = vec![3];
        assert!(order.may_append(&stuck, 0));
    }
}
