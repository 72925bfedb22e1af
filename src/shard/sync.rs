//! Keeping one shard in step with the others: taking in the event log (the node's
//! replica as of each entry, and this shard's members of each channel), proposing
//! events, and exchanging hand-offs.
//!
//! The merge rule that keeps every client's commands in order on every shard (see
//! the contract in [`crate::state::bus`]):
//! 1. before handling a hand-off stamped `after = m`, apply the log through `m` (the
//!    sender had, so those entries are published: this never waits);
//! 2. before applying an event proposed by shard `s`, handle the hand-offs from `s`
//!    stamped before it (`s` sent them before it appended the event, so they are in
//!    the link).
//!
//! So if alice sends `PRIVMSG #c` then `PART #c`, bob on another shard gets the
//! message before the PART; if she sends `JOIN #c` then `PRIVMSG #c`, he gets the JOIN
//! first; and once a shard has applied a KICK or PART, no later fan-out there reaches
//! the member that left, because fan-out reads the same replica.

use super::Shard;
use crate::state::bus::{Handoff, Stamped, MAX_PENDING_HANDOFFS};
use crate::state::log::Entry;
use crate::state::network::{Event, Outcome, Refusal};
use std::sync::Arc;
use std::task::Waker;

impl Shard {
    /// Proposes `event`, waits for its place in the log (no waiting in practice: the
    /// append is one short lock) and applies the log through it, rendering every
    /// event's notifications on the way. Returns `event`'s outcome, from which the
    /// caller answers its client.
    ///
    /// Hand-offs made before the proposal are sent first, so other shards see this
    /// shard's earlier messages before the event (merge rule 2).
    pub fn propose(&mut self, event: Event) -> Outcome {
        self.send_outgoing_before_event();
        let now = crate::proto::time::unix_seconds(std::time::SystemTime::now());
        if self.shared.cluster.is_some() {
            return self.propose_to_cluster(now, event);
        }
        let seq = self.shared.log.append(self.id, now, event);
        self.counts.events_proposed += 1;
        self.shared.bus.wake_others(self.id);
        loop {
            match self.apply_next() {
                Some(entry) if entry.seq == seq => return entry.outcome.clone(),
                Some(_) => {}
                None => unreachable!("the log publishes an entry before append returns"),
            }
        }
    }

    /// A cluster node's proposal: the cluster link publishes it to the cluster's
    /// stream, whose order is the total order, and appends it to this node's log when
    /// it comes back; this shard applies the log (and takes in hand-offs, so no
    /// other shard waits on it) until it meets its own entry, and answers from that
    /// outcome. While the link has no connection the change is refused at once: a
    /// node that cannot order a change must not make it.
    ///
    /// The wait is one round trip to the NATS server, during which this shard's
    /// other clients wait too: the price of deciding every change (a nick, a JOIN
    /// into a `+l` channel) in one order for the whole cluster.
    fn propose_to_cluster(&mut self, at_unix: u64, event: Event) -> Outcome {
        let Some(cluster) = self.shared.cluster.as_ref() else {
            return Outcome::Unchanged;
        };
        let link = cluster.endpoint;
        if !cluster.is_connected() {
            return Outcome::Refused(Refusal::ClusterUnavailable);
        }
        cluster.wait_here();
        self.proposals += 1;
        let proposal = self.proposals;
        self.hand_off(
            link,
            Handoff::Propose {
                proposal,
                at_unix,
                event: Box::new(event),
            },
        );
        self.send_outgoing_before_event();
        self.counts.events_proposed += 1;
        loop {
            // Entries are applied here and by the hand-offs taken in below (which
            // catch up to their stamps); either way the outcome lands in `answered`.
            while self.apply_next().is_some() {}
            if let Some(at) = self.answered.iter().position(|(p, _)| *p == proposal) {
                return self.answered.swap_remove(at).1;
            }
            if let Some(at) = self.unordered.iter().position(|&p| p == proposal) {
                self.unordered.swap_remove(at);
                return Outcome::Refused(Refusal::ClusterUnavailable);
            }
            // The connection went while the proposal was out: refuse now rather than
            // wait for its acknowledgement to time out. Should NATS still have stored
            // it, it applies when the node catches up, as every other node's does;
            // its outcome then finds nobody waiting and is dropped.
            if self
                .shared
                .cluster
                .as_ref()
                .is_some_and(|cluster| !cluster.is_connected())
            {
                return Outcome::Refused(Refusal::ClusterUnavailable);
            }
            if self
                .shared
                .shutting_down
                .load(std::sync::atomic::Ordering::Acquire)
            {
                // The node leaves: its NodeLost settles this client's state for all.
                return Outcome::Refused(Refusal::ClusterUnavailable);
            }
            self.take_in_handoffs();
            self.flush_handoffs();
            if !self.log.has_next() && self.unordered.is_empty() {
                std::thread::park_timeout(std::time::Duration::from_millis(5));
            }
        }
    }

    /// Handles every hand-off received so far (after the log entries each needs).
    fn take_in_handoffs(&mut self) {
        for source in 0..self.inbound.len() as u16 {
            while let Some(stamped) = self.next_inbound(source, u64::MAX) {
                self.catch_up_to(stamped.after);
                self.handle(stamped.handoff);
            }
        }
    }

    /// Applies every event published so far.
    pub fn catch_up(&mut self) {
        while self.apply_next().is_some() {}
    }

    /// Applies published events and handles received hand-offs until neither is
    /// left, closing any client found to be a slow consumer on the way. Returns
    /// whether anything was done.
    pub fn pump(&mut self) -> bool {
        self.take_in_finished();
        let mut did_anything = false;
        loop {
            let mut progressed = false;
            while self.apply_next().is_some() {
                progressed = true;
            }
            for source in 0..self.inbound.len() as u16 {
                while let Some(stamped) = self.next_inbound(source, u64::MAX) {
                    self.catch_up_to(stamped.after);
                    self.handle(stamped.handoff);
                    progressed = true;
                }
            }
            if !self.unordered.is_empty() || !self.answered.is_empty() {
                // Nobody waits for these (a proposal's wait ends with its answer).
                self.unordered.clear();
                self.answered.clear();
            }
            progressed |= self.take_in_deferred_replies();
            if !progressed {
                break;
            }
            did_anything = true;
        }
        self.close_doomed();
        did_anything
    }

    /// Whether hand-offs (or channel messages for the store) wait to be sent.
    pub fn has_outgoing(&self) -> bool {
        !self.history.is_empty() || self.outgoing.iter().any(|batch| !batch.is_empty())
    }

    /// Parks the hand-off flusher until something is owed to another shard.
    pub fn park_handoff_flusher(&mut self, waker: &Waker) {
        self.handoff_flusher = Some(waker.clone());
    }

    /// Sends each pending batch to its shard: one push and at most one wake-up per
    /// destination. A batch that does not fit (the receiver is far behind) stays
    /// and is retried on the next pass.
    pub fn flush_handoffs(&mut self) {
        self.flush_history();
        self.counts.handoff_batches += self
            .links
            .send_pending(&mut self.outgoing, &self.shared.bus);
    }

    /// Whether some destination owes so much that client input should wait
    /// ([`MAX_PENDING_HANDOFFS`]): the receiving shard is far behind, and reading
    /// more input would only grow the backlog.
    pub(super) fn links_congested(&self) -> bool {
        self.outgoing
            .iter()
            .any(|batch| batch.len() >= MAX_PENDING_HANDOFFS)
    }

    /// Queues `handoff` for `shard`, stamped with this replica's log position.
    pub(super) fn hand_off(&mut self, shard: u16, handoff: Handoff) {
        let after = self.log.network().applied();
        let Some(batch) = self.outgoing.get_mut(shard as usize) else {
            return;
        };
        batch.push_back(Stamped { after, handoff });
        if let Some(flusher) = self.handoff_flusher.take() {
            flusher.wake();
        }
    }

    /// Sends every pending batch before this shard appends an event. A link that is
    /// full is waited for, taking in this shard's own hand-offs meanwhile: the
    /// receiver may itself be waiting to send here (two shards, or a shard and the
    /// cluster link, each with a full link to the other), and an event must not
    /// overtake the hand-offs made before it.
    fn send_outgoing_before_event(&mut self) {
        self.flush_handoffs();
        while self.has_outgoing() {
            std::thread::yield_now();
            self.take_in_handoffs();
            self.flush_handoffs();
        }
    }

    /// Applies the log until this replica has applied `seq`.
    fn catch_up_to(&mut self, seq: u64) {
        while self.log.network().applied() < seq {
            if self.apply_next().is_none() {
                break;
            }
        }
    }

    /// Takes in the next published entry, if any, after the hand-offs its proposer
    /// made before it (merge rule 2: handled while this shard still reads the
    /// replica before the entry), and renders it for local clients.
    /// Returns the entry (not a copy of its outcome: only a proposer needs that, for
    /// its own entry, and a QUIT's outcome carries the whole user).
    fn apply_next(&mut self) -> Option<Arc<Entry>> {
        let (origin, seq) = self.log.peek().map(|entry| (entry.origin, entry.seq))?;
        if origin != self.id {
            while let Some(stamped) = self.next_inbound(origin, seq) {
                self.handle(stamped.handoff);
            }
        }
        let entry = self.log.next()?;
        self.take_in(&entry);
        Some(entry)
    }

    /// Takes in `entry`, which the log reader has just made this shard's position
    /// (the replica this shard reads is now the entry's): this shard's members of
    /// each channel follow it, then its clients are told what it changed.
    fn take_in(&mut self, entry: &Entry) {
        let (node, shard) = (self.node, self.id);
        self.local_members
            .take_in(&entry.event.event, &entry.outcome, &entry.network, |id| {
                id.node == node && id.shard == shard
            });
        self.counts.events_applied += 1;
        self.persist_accounts(entry);
        self.notify(&entry.event, entry.at, &entry.outcome);
        if entry.proposal != 0 && entry.origin == self.id {
            self.answered.push((entry.proposal, entry.outcome.clone()));
        }
    }

    /// The next hand-off received from `source` if it is stamped before `before`.
    fn next_inbound(&mut self, source: u16, before: u64) -> Option<Stamped> {
        let index = source as usize;
        loop {
            let batch = self.inbound.get_mut(index)?;
            if let Some(stamped) = batch.front() {
                if stamped.after >= before {
                    return None;
                }
                return batch.pop_front();
            }
            let link = self.links.from.get_mut(index)?.as_mut()?;
            let fresh = link.receive()?;
            let done = std::mem::replace(&mut self.inbound[index], fresh);
            link.recycle(done);
        }
    }

    /// Does the work of one hand-off.
    fn handle(&mut self, handoff: Handoff) {
        match handoff {
            Handoff::Channel {
                channel,
                mut message,
                except,
            } => self.deliver_to_local_members(channel.as_str(), &mut message, except),
            Handoff::Client {
                to, mut message, ..
            } => self.send_message(to, &mut message),
            Handoff::Unordered { proposal } => self.unordered.push(proposal),
            Handoff::Notice { text } => self.notice_everyone(&text),
            // Only the cluster link takes these; a shard never receives them.
            Handoff::Nodes { .. } | Handoff::Propose { .. } => {}
        }
    }
}
