//! What runs on a shard's timer rather than on input: flood resumption, the
//! liveness sweep (registration and ping timeouts, stalled output), REHASH answers
//! and reloaded bans, and the counters published for readers off the shard.

use super::{Shard, SENDQ_EXCEEDED, WRITE_TIMEOUT};
use crate::proto::LineBuilder;
use crate::state::client::CloseReason;
use std::time::Instant;
use tracing::info;

impl Shard {
    /// Whether some client's input waits (the driver then ticks often).
    pub fn has_throttled(&self) -> bool {
        !self.throttled.is_empty()
    }

    /// Lets waiting input through as flood tokens and link room allow.
    pub fn resume_throttled(&mut self, now: Instant) {
        if self.links_congested() {
            return;
        }
        for id in std::mem::take(&mut self.throttled) {
            let Some(client) = self.clients.get_mut(id.slot) else {
                continue;
            };
            client.throttled = false;
            self.process_buffered(id, now);
        }
        self.close_doomed();
    }

    /// Registration timeouts, liveness PINGs, ping timeouts and stalled output; run
    /// about once a second.
    ///
    /// Every connection ends in bounded time: one whose queued output has made no
    /// progress for `--write-timeout` (its peer stopped reading) is closed, and its
    /// socket handed to the driver to reset, whether it was live or already closing
    /// (a client cut off for its sendq whose socket is full would otherwise hold its
    /// slot and kernel buffers for ever).
    pub fn check_liveness(&mut self, now: Instant) {
        self.sweep_history(now);
        let config = &self.shared.config;
        let live = &self.shared.live;
        let (registration_timeout, ping_interval) =
            (live.registration_timeout(), live.ping_interval());
        let (ping_timeout, sendq) = (live.ping_timeout(), live.sendq());
        let mut expired = Vec::new();
        let mut stalled = Vec::new();
        for client in self.clients.iter_mut() {
            if client.outbox.unwritten() == 0 {
                client.stalled_since = None;
                continue;
            }
            let since = *client.stalled_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= config.write_timeout {
                if let Some(socket) = client.socket.take() {
                    stalled.push((client.id, client.closing, socket));
                }
            }
        }
        for (id, closing, socket) in stalled {
            if !closing {
                self.close(id, CloseReason::Server(WRITE_TIMEOUT));
            }
            self.stalled.push(socket);
            self.counts.write_timeouts += 1;
        }
        let config = &self.shared.config;
        let ping = LineBuilder::sourceless("PING")
            .trailing(&config.server_name)
            .finish();
        for client in self.clients.iter_mut().filter(|c| !c.closing) {
            if !client.is_registered() {
                if now.saturating_duration_since(client.connected_at) >= registration_timeout {
                    expired.push((client.id, CloseReason::Server("Registration timed out")));
                }
                continue;
            }
            let quiet = now.saturating_duration_since(client.last_input);
            if client.ping_sent && quiet >= ping_interval + ping_timeout {
                expired.push((client.id, CloseReason::Server("Ping timeout")));
            } else if !client.ping_sent && quiet >= ping_interval {
                client.ping_sent = true;
                if client.outbox.push(ping.clone(), sendq).is_err() {
                    expired.push((client.id, CloseReason::Server(SENDQ_EXCEEDED)));
                }
            }
        }
        self.doomed.extend(expired);
        self.close_doomed();
        self.propose_reloaded_bans();
        self.answer_rehashes();
        self.enforce_nicks(now);
        self.release_stuck_awaits(now);
    }

    /// Tells this shard's operators who sent REHASH or UPGRADE how it went (see
    /// [`Rehash`](crate::state::rehash::Rehash)); two atomic loads when nobody waits.
    pub(super) fn answer_rehashes(&mut self) {
        let mut answers = self.shared.rehash.take_answers(self.node, self.id);
        answers.extend(
            self.shared
                .upgrade_requests
                .take_answers(self.node, self.id),
        );
        for (id, outcome) in answers {
            let Some(nick) = self.network().user(id).map(|user| user.nick.to_string()) else {
                continue;
            };
            for line in outcome.lines(&self.shared.config.server_name, &nick) {
                self.send(id, line);
            }
        }
    }

    /// Shard 0 proposes a ban list a reload read from a changed ban file (see
    /// [`BanStore`](crate::ban_file::BanStore)); one atomic load when there is none.
    pub(super) fn propose_reloaded_bans(&mut self) {
        if self.id != 0 {
            return;
        }
        if let Some(bans) = self.shared.ban_store.take_reloaded() {
            info!(bans = bans.len(), "ban file changed: applying its list");
            self.propose(crate::state::network::Event::ReplaceBans { bans });
            self.close_doomed();
        }
    }

    /// Publishes this shard's counters for readers on other threads.
    pub fn publish_counters(&mut self) {
        self.counts.connections = self.clients.len() as u64;
        if let Some(counters) = self.shared.counters.get(self.id as usize) {
            counters.publish(&self.counts);
        }
        self.shared.publish_population(
            self.log.network().user_count(),
            self.log.network().channel_count(),
            self.log.network().oper_count(),
        );
    }

    /// Logs how many connections this shard holds (at shutdown).
    pub fn log_summary(&self) {
        info!(
            shard = self.id,
            connections = self.clients.len(),
            accepted = self.counts.accepted,
            deliveries = self.counts.deliveries,
            events_applied = self.counts.events_applied,
            "shard stopping"
        );
    }
}
