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
//! Core NATS delivers one publisher's messages in order, so "arrived" is a count,
//! per run of the sending node (a restarted node counts from 1 again).
//! A message lost by NATS (it is at-most-once) would hold rule 2 forever; the link
//! gives up waiting after a bound and counts the loss ([`Reorder::give_up_on`]).

use super::wire::{EventEnvelope, MessageHeader, Received};
use std::collections::VecDeque;

/// Messages waiting for rule 1, and what has arrived from each node; see the
/// module comment.
#[derive(Debug, Default)]
pub struct Reorder {
    /// Per node (indexed by node number): the run heard from last, and how many of
    /// its messages arrived.
    arrived: Vec<(u64, u64)>,
    /// Messages waiting for their `after`, in arrival order.
    held: VecDeque<(MessageHeader, Received)>,
    /// Messages found missing (a gap in a node's numbering, or given up on).
    pub lost: u64,
}

impl Reorder {
    /// Goes on from another process's counts (a live upgrade: `arrived` as
    /// [`Reorder::arrived`] gave them), so a message it had taken in is dropped here
    /// as a repeat.
    pub fn resumed(arrived: Vec<(u64, u64)>, lost: u64) -> Reorder {
        Reorder {
            arrived,
            held: VecDeque::new(),
            lost,
        }
    }

    /// Per node: the run heard from last, and how many of its messages arrived.
    pub fn arrived(&self) -> &[(u64, u64)] {
        &self.arrived
    }

    /// Whether a message waits for stream entries.
    pub fn holds_messages(&self) -> bool {
        !self.held.is_empty()
    }

    /// Records a message from another node. A repeated number is dropped (returns
    /// false); a jump counts the skipped numbers as lost.
    pub fn arrive(&mut self, header: MessageHeader, body: Received) -> bool {
        let seen = self.count_of(header.from, header.incarnation);
        let before = *seen;
        if header.number <= before {
            return false;
        }
        *seen = header.number;
        self.lost += header.number - before - 1;
        self.held.push_back((header, body));
        true
    }

    /// The arrived count of `node`'s run `incarnation`, reset when a new run shows
    /// up (an older run's stragglers then count for the new one; they are harmless).
    fn count_of(&mut self, node: u16, incarnation: u64) -> &mut u64 {
        let index = usize::from(node);
        if self.arrived.len() <= index {
            self.arrived.resize(index + 1, (0, 0));
        }
        let entry = &mut self.arrived[index];
        if entry.0 != incarnation {
            *entry = (incarnation, 0);
        }
        &mut entry.1
    }

    /// The held messages that rule 1 lets through once the log holds entries up to
    /// `appended`, oldest first. Stops at the first that must wait, so one sender's
    /// messages never overtake each other.
    pub fn ready(&mut self, appended: u64) -> Vec<(MessageHeader, Received)> {
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
        let arrived = match self.arrived.get(envelope.node as usize) {
            Some(&(run, count)) if run == envelope.incarnation => count,
            _ => 0,
        };
        arrived >= owed
    }

    /// Stops waiting for messages `envelope`'s node sent this node before this run of
    /// it began: they were addressed to an earlier run, which got them or never
    /// will; they are not lost, and nothing is counted.
    pub fn settle_earlier_run(&mut self, envelope: &EventEnvelope, me: u16) {
        let owed = envelope.sent.get(me as usize).copied().unwrap_or(0);
        let arrived = self.count_of(envelope.node, envelope.incarnation);
        *arrived = (*arrived).max(owed);
    }

    /// Stops waiting for messages `envelope`'s node owes: they count as lost.
    pub fn give_up_on(&mut self, envelope: &EventEnvelope, me: u16) {
        let owed = envelope.sent.get(me as usize).copied().unwrap_or(0);
        let arrived = self.count_of(envelope.node, envelope.incarnation);
        if *arrived < owed {
            let missing = owed - *arrived;
            *arrived = owed;
            self.lost += missing;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::MessageBody;
    use crate::proto::outgoing::Outgoing;
    use crate::state::slab::SlotKey;
    use crate::state::ClientId;
    use bytes::Bytes;

    fn message(from: u16, number: u64, after: u64) -> (MessageHeader, Received) {
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
                incarnation: 1,
                number,
                after,
            },
            Received {
                body: MessageBody::Client {
                    to,
                    message: Outgoing::new(Bytes::from_static(b"PING :x\r\n")).to_wire(),
                },
                kept: None,
            },
        )
    }

    fn event_from(node: u16, sent_to_zero: u64) -> EventEnvelope {
        EventEnvelope {
            node,
            incarnation: 1,
            shard: 0,
            proposal: 1,
            at_unix: 0,
            published_micros: 0,
            sent: vec![sent_to_zero],
            event: Vec::new(),
        }
    }

    #[test]
    fn a_resumed_reorder_drops_what_the_previous_process_took_in() {
        let arrive = |reorder: &mut Reorder, number| {
            let (header, body) = message(1, number, 0);
            reorder.arrive(header, body)
        };
        let mut first = Reorder::default();
        assert!(arrive(&mut first, 1) && arrive(&mut first, 2));
        let mut resumed = Reorder::resumed(first.arrived().to_vec(), first.lost);
        // The new process subscribed before the capture: it hears 2 again, then 3.
        assert!(!arrive(&mut resumed, 2));
        assert!(arrive(&mut resumed, 3));
        assert_eq!(resumed.ready(0).len(), 1);
        assert_eq!(resumed.lost, 0);
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

    #[test]
    fn a_restarted_node_counts_its_messages_afresh() {
        let mut order = Reorder::default();
        for number in 1..=3 {
            let (header, body) = message(1, number, 0);
            assert!(order.arrive(header, body));
        }
        let (mut header, body) = message(1, 1, 0);
        header.incarnation = 2;
        assert!(order.arrive(header, body), "number 1 of the new run is new");
        let mut event = event_from(1, 1);
        event.incarnation = 2;
        assert!(order.may_append(&event, 0));
        event.incarnation = 1;
        assert!(!order.may_append(&event, 0), "the old run's count is gone");
    }

    #[test]
    fn messages_owed_to_an_earlier_run_of_this_node_are_not_awaited_nor_lost() {
        let mut order = Reorder::default();
        let replayed = event_from(1, 5);
        assert!(!order.may_append(&replayed, 0));
        order.settle_earlier_run(&replayed, 0);
        assert!(order.may_append(&replayed, 0));
        assert_eq!(order.lost, 0);
        let (header, body) = message(1, 6, 0);
        assert!(order.arrive(header, body), "the next one is new");
        assert_eq!(order.lost, 0);
    }
}
