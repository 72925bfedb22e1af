//! History, the shard's side: messages to keep are batched per scheduler pass and
//! handed to the store's writer as one job (never a write on the message path);
//! channel events get their msgid here and are kept by one shard of the node;
//! CHATHISTORY answers built off the shard come back through its mailbox; shard 0
//! has the writer sweep expired messages hourly.

use super::Shard;
use crate::proto::outgoing::{MsgId, Outgoing};
use crate::proto::texts;
use crate::proto::{CaselessKey, LineBuilder};
use crate::state::network::Sequenced;
use crate::state::ClientId;
use crate::store::history::{Kind, Record, Target};
use std::time::{Duration, Instant, SystemTime};
use tracing::warn;

/// How often the store sweeps every channel's history for expired messages.
const HISTORY_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The shard number in the msgid of an event's line: no shard has it (shards are
/// fewer than 64), so these ids never meet a message's.
const EVENT_MSGID_ORIGIN: u16 = 127;

/// Bits of an entry's several lines' msgids that number the line (a lost node has
/// fewer users than this).
const LINE_BITS: u32 = 24;

/// Longest a client's lines wait for an answer built off the shard; only a store
/// whose readers have stopped takes this long (a query answers in milliseconds).
const DEFERRED_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl Shard {
    /// Keeps a channel message for CHATHISTORY: it joins this pass's batch for the
    /// store's writer (nothing is written here). Without a store it is not kept.
    /// Cost: one push of a record whose parts are shared with the fan-out.
    pub fn keep_in_history(&mut self, record: Record) {
        if !self.shared.keeps_history() {
            return;
        }
        self.history.push(record);
        if self.history.len() == 1 {
            if let Some(flusher) = self.handoff_flusher.take() {
                flusher.wake();
            }
        }
    }

    /// A channel event's line (`message`, caused by `entry`, which this node
    /// applied `at`) as members see it and history replays it (IRCv3 chathistory,
    /// "Event playback"). Where history is kept it gets a msgid made from the log
    /// position and the time the node applied it, the same on every shard of the
    /// node, and every shard with members of one of `channels` keeps it there: a
    /// member's own shard hands the store the event (before the member can ask for
    /// it, as with messages), and the store keeps the first of the identical copies.
    /// Each shard keeps events in the log's order, so history holds them in the
    /// order members saw them (but for two events of one millisecond kept first by
    /// two different shards).
    pub(super) fn keep_event(
        &mut self,
        entry: &Sequenced,
        at: SystemTime,
        channels: &[CaselessKey],
        message: Outgoing,
    ) -> Outgoing {
        self.keep_event_line(entry, at, 0, channels, message)
    }

    /// [`Shard::keep_event`] for line `nth` (from 1) of an entry that causes several
    /// (a lost node's users' QUITs), each with a msgid of its own.
    pub(super) fn keep_event_line(
        &mut self,
        entry: &Sequenced,
        at: SystemTime,
        nth: u64,
        channels: &[CaselessKey],
        message: Outgoing,
    ) -> Outgoing {
        if !self.shared.keeps_history() {
            return message;
        }
        let msgid = if nth == 0 {
            MsgId::new(
                self.started_micros,
                (self.node << 7) | EVENT_MSGID_ORIGIN,
                entry.seq,
            )
        } else {
            // Another shard number no shard has; the line's number in the low bits.
            let counter = (entry.seq << LINE_BITS) | (nth & ((1 << LINE_BITS) - 1));
            MsgId::new(
                self.started_micros,
                (self.node << 7) | (EVENT_MSGID_ORIGIN - 1),
                counter,
            )
        };
        let message = message.at(at).with_msgid(msgid);
        for channel in channels {
            if self.local_members.ids_of(channel.as_str()).next().is_some() {
                self.keep_in_history(Record {
                    target: Target::Channel(channel.clone()),
                    kind: Kind::Event,
                    message: message.clone(),
                });
            }
        }
        message
    }

    /// Notes when a local client joined `channel` (the `+s`/`+i` read cutoff), or
    /// forgets it when `joined` is `None` (it left).
    pub(super) fn note_join_time(
        &mut self,
        id: ClientId,
        channel: &CaselessKey,
        joined: Option<u64>,
    ) {
        if !self.shared.keeps_history() {
            return;
        }
        let Some(client) = self.client_mut(id) else {
            return;
        };
        let times = client.joined_at.get_or_insert_with(Box::default);
        times.retain(|(known, _)| known != channel);
        if let Some(millis) = joined {
            times.push((channel.clone(), millis));
        }
    }

    /// Hands this pass's channel messages to the store's writer as one job. Done
    /// before hand-offs are sent, and before a CHATHISTORY query is queued, so the
    /// store (committed, or in its uncommitted tail, which queries read too) holds
    /// every message a client could have seen before it asks. A writer that is
    /// behind refuses the batch: those messages are delivered but not kept (logged).
    pub fn flush_history(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let Some(store) = self.shared.store.as_ref() else {
            self.history.clear();
            return;
        };
        let records = std::mem::take(&mut self.history);
        let count = records.len();
        let retention = self.history_retention();
        if let Err(why) = crate::store::history::keep(store, records, retention, unix_millis()) {
            warn!(shard = self.id, messages = count, %why, "channel messages not kept in history");
        }
    }

    /// Shard 0 has the store's writer expire every channel's old messages once an
    /// hour (and once soon after start): an append expires only the channel it
    /// writes, so a channel that went quiet would otherwise keep its messages past
    /// their age on disk (reads never show them either way).
    pub(super) fn sweep_history(&mut self, now: Instant) {
        let Some(store) = self.shared.store.as_ref().filter(|_| self.id == 0) else {
            return;
        };
        if self
            .history_swept
            .is_some_and(|at| now.duration_since(at) < HISTORY_SWEEP_EVERY)
        {
            return;
        }
        self.history_swept = Some(now);
        let retention = self.history_retention();
        let job = Box::new(move |transaction: &redb::WriteTransaction| {
            crate::store::history::expire_all(transaction, retention, unix_millis())
        });
        if let Err(why) = store.write(job) {
            warn!(%why, "the history sweep was not queued; the next one will be");
        }
    }

    /// The retention settings, as the store applies them.
    fn history_retention(&self) -> crate::store::history::Retention {
        crate::store::history::Retention::of(&self.shared.config)
    }

    /// Delivers the replies built off this shard since its last pass.
    pub(super) fn take_in_deferred_replies(&mut self) -> bool {
        let mut any = false;
        while let Some(reply) = self.deferred.next() {
            any = true;
            for line in reply.lines {
                self.send(reply.to, line);
            }
            self.stop_awaiting(reply.to, Instant::now());
        }
        any
    }

    /// Lets a client's waiting lines through once the answer it waited for came (or
    /// never will: see [`Shard::release_stuck_awaits`]).
    fn stop_awaiting(&mut self, id: ClientId, now: Instant) {
        let Some(client) = self.client_mut(id) else {
            return;
        };
        if client.awaiting_reply.take().is_some() {
            self.process_buffered(id, now);
            self.close_doomed();
        }
    }

    /// Releases clients whose deferred answer has not come within
    /// [`DEFERRED_REPLY_TIMEOUT`] (a store whose readers stopped): their lines go on,
    /// and they are told the query failed. Run by the liveness tick.
    pub(super) fn release_stuck_awaits(&mut self, now: Instant) {
        let stuck: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|client| {
                client.awaiting_reply.is_some_and(|since| {
                    now.saturating_duration_since(since) >= DEFERRED_REPLY_TIMEOUT
                })
            })
            .map(|client| client.id)
            .collect();
        for id in stuck {
            let line = LineBuilder::from_source(&self.shared.config.server_name, "FAIL")
                .arg("CHATHISTORY")
                .arg("MESSAGE_ERROR")
                .trailing(texts::THE_ANSWER_DID_NOT_COME_IN_TIME)
                .finish();
            self.send(id, line);
            self.stop_awaiting(id, now);
        }
    }
}

/// The wall clock in Unix milliseconds (history retention).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
