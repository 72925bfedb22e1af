//! A shard's part in a live upgrade: the freeze sequence every driver steps through
//! once it has stopped its socket operations, the capture of its clients, and, in
//! the new process, their restoration (see [`crate::upgrade`]).

use super::Shard;
use crate::proto::numeric::ERR_SASLABORTED;
use crate::proto::{texts, LineBuilder};
use crate::state::client::{Client, CloseReason};
use crate::state::handover::{ClientRecord, ListenerKind, ShardCapture};
use crate::state::slab::Slab;
use crate::state::ClientId;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What others see when a connection that cannot be handed over (TLS, whose keys
/// live in this process; WebSocket, whose framing does) is closed by an upgrade.
pub const UPGRADE_CLOSE: &str = "Server upgrade (reconnect)";

/// What a TLS or WebSocket client is told before an upgrade closes it.
pub const UPGRADE_NOTICE: &str =
    "Server upgrading: this encrypted or WebSocket connection cannot be carried over; reconnect in a moment";

/// Where a freezing shard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeStep {
    /// Input stopped here; waits for every shard's input to stop and for this
    /// shard's work off the shard (password checks, CHATHISTORY) to come back.
    Settling,
    /// Sent its last hand-offs; waits for every shard to have sent theirs.
    Sealing,
    /// Captured and posted; waits for the coordinator (exit, or thaw).
    Captured,
}

/// One shard's progress through a freeze.
#[derive(Debug)]
pub struct FreezeSequence {
    step: FreezeStep,
}

impl FreezeSequence {
    /// Begins the freeze for `shard` once its driver has stopped every socket
    /// operation: closes its TLS and WebSocket connections (they cannot be handed
    /// over), delivers what it accepted, and counts its input as stopped.
    pub fn begin(shard: &mut Shard) -> FreezeSequence {
        let closing: Vec<ClientId> = shard
            .clients
            .iter()
            .filter(|client| !client.crosses_an_upgrade())
            .map(|client| client.id)
            .collect();
        for id in closing {
            shard.close(id, CloseReason::Server(UPGRADE_CLOSE));
        }
        shard.close_doomed();
        shard.pump();
        shard.shared.freeze.note_input_stopped();
        // Another shard may wait for this step of this one; a driver that sleeps
        // until its next event would otherwise wait for its tick (ring: 50 ms).
        shard.shared.bus.wake_others(shard.id);
        FreezeSequence {
            step: FreezeStep::Settling,
        }
    }

    /// Where the sequence is.
    pub fn step(&self) -> FreezeStep {
        self.step
    }

    /// Takes the next step the other shards allow; captures the shard (with its
    /// `listeners`) when all have sealed. A driver calls it again after waiting a
    /// little.
    pub fn advance(
        &mut self,
        shard: &mut Shard,
        listeners: &[(RawFd, ListenerKind)],
    ) -> FreezeStep {
        let shards = shard.shared.config.shards;
        // A cluster node's link seals last: every proposal back from the stream,
        // every message the shards sent published.
        let sealers = shards + usize::from(shard.shared.cluster.is_some());
        if self.step == FreezeStep::Settling {
            shard.pump();
            if shard.shared.freeze.all_input_stopped(shards) && !shard.has_work_off_shard() {
                shard.flush_handoffs();
                if !shard.has_outgoing() {
                    shard.shared.freeze.note_sealed();
                    shard.shared.bus.wake_others(shard.id);
                    self.step = FreezeStep::Sealing;
                }
            }
        }
        if self.step == FreezeStep::Sealing {
            if sealers > shards && !shard.shared.freeze.all_sealed(sealers) {
                // The link may still append entries and forward messages; taking
                // them in keeps its queues to this shard from filling up.
                shard.pump();
            }
            shard.flush_handoffs();
            if shard.shared.freeze.all_sealed(sealers) {
                shard.pump();
                let capture = shard.capture(listeners, Instant::now());
                shard.shared.freeze.post(shard.id, capture);
                self.step = FreezeStep::Captured;
            }
        }
        self.step
    }
}

impl Shard {
    /// A live upgrade's farewell (see [`Freeze::ask_farewell`]): tells each TLS
    /// and WebSocket client why it is being closed, closes it, and reports once all
    /// have gone. Runs on the housekeeping tick; one atomic load when none is asked.
    ///
    /// [`Freeze::ask_farewell`]: crate::state::freeze::Freeze::ask_farewell
    pub fn farewell_for_upgrade(&mut self) {
        let round = self.shared.freeze.farewell();
        if round == 0 || self.farewell_round == round {
            return;
        }
        let leaving: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|client| !client.crosses_an_upgrade())
            .map(|client| client.id)
            .collect();
        if !self.farewell_said {
            self.farewell_said = true;
            for &id in &leaving {
                let Some(client) = self.clients.get_mut(id.slot) else {
                    continue;
                };
                if client.closing {
                    continue;
                }
                let line = LineBuilder::from_source(&self.shared.config.server_name, "NOTICE")
                    .arg(client.nick())
                    .trailing(UPGRADE_NOTICE)
                    .finish();
                let _ = client.outbox.push(line, usize::MAX);
                self.close(id, CloseReason::Server(UPGRADE_CLOSE));
            }
            self.close_doomed();
        }
        if leaving.is_empty() {
            self.farewell_round = round;
            self.farewell_said = false;
            self.shared.freeze.note_farewell_done();
        }
    }

    /// Wakes every client's writer (a thawed shard's writers look at their queues).
    pub fn wake_writers(&mut self) {
        for client in self.clients.iter_mut() {
            client.outbox.wake_writer();
        }
    }

    /// Whether a client of this shard waits for an answer built off it.
    fn has_work_off_shard(&self) -> bool {
        self.clients.iter().any(|client| {
            client.awaiting_reply.is_some()
                || client.auth.as_ref().is_some_and(|auth| auth.in_flight)
        })
    }

    /// Every client this shard hands over (closing ones are not: their QUIT has
    /// been applied, and the old process's exit closes their sockets), with the
    /// descriptors the new process needs, listeners first.
    fn capture(&self, listeners: &[(RawFd, ListenerKind)], now: Instant) -> ShardCapture {
        let mut capture = ShardCapture {
            listeners: listeners.iter().map(|&(_, kind)| kind).collect(),
            descriptors: listeners.iter().map(|&(fd, _)| fd).collect(),
            guests: self.guests,
            nick_deadlines: self
                .nick_deadlines
                .iter()
                .map(|&(id, at)| {
                    let left = at.saturating_duration_since(now).as_millis();
                    (id, u64::try_from(left).unwrap_or(u64::MAX))
                })
                .collect(),
            clients: Vec::new(),
        };
        for client in self.clients.iter() {
            if client.closing || !client.crosses_an_upgrade() {
                continue;
            }
            // A client whose socket was taken to be reset (stalled) is going.
            let Some(fd) = client.socket else {
                continue;
            };
            capture.clients.push(ClientRecord::capture(client, now));
            capture.descriptors.push(fd);
        }
        capture
    }

    /// Takes in clients handed over by a live upgrade (the new process, before the
    /// shard serves): each at its old slot, so the ids the network replica and the
    /// other shards know stay valid; counted against `--max-clients` and its source,
    /// and back on its MONITOR, server-notice and throttled lists. `clients` holds
    /// each client already restored ([`ClientRecord::restore`]).
    pub fn restore(&mut self, clients: Vec<(Client, bool)>, capture_rest: RestoredShard) {
        let now = Instant::now();
        let mut entries = Vec::with_capacity(clients.len());
        for (mut client, sasl_aborted) in clients {
            if sasl_aborted {
                // The exchange's state did not cross: say so, as AUTHENTICATE * would.
                let line =
                    LineBuilder::from_source(&self.shared.config.server_name, ERR_SASLABORTED)
                        .arg(client.nick())
                        .trailing(texts::SASL_AUTHENTICATION_ABORTED)
                        .finish();
                let _ = client.outbox.push(line, usize::MAX);
            }
            let id = client.id;
            self.shared.connections.fetch_add(1, Ordering::AcqRel);
            self.shared.sources.readmit(client.admission, now);
            for nick in &client.monitoring {
                self.monitors.watch(id, nick.clone());
            }
            if !client.snomask.is_empty() {
                self.notice_watchers.push(id);
            }
            if client.throttled {
                self.throttled.push(id);
            }
            entries.push((id.slot, client));
        }
        self.clients = Slab::from_entries(entries);
        self.guests = capture_rest.guests;
        self.nick_deadlines = capture_rest
            .nick_deadlines
            .into_iter()
            .map(|(id, ms)| (id, now + Duration::from_millis(ms)))
            .collect();
        // Readers on other threads (STATUS=, STATS, metrics) see the restored
        // clients at once, not at the first housekeeping tick.
        self.publish_counters();
    }
}

/// The parts of a shard's capture besides its clients and listeners.
#[derive(Debug, Default)]
pub struct RestoredShard {
    /// Guest nicks handed out so far.
    pub guests: u64,
    /// Grace periods left, in milliseconds.
    pub nick_deadlines: Vec<(ClientId, u64)>,
}
