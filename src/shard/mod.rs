//! One core's share of the server: its clients, its index of local channel members,
//! and the hand-offs it owes other shards.
//!
//! [`Shard`] is the sans-IO core (ARCHITECTURE.md invariant 7): drivers feed it
//! accepted peers, received bytes, timer ticks and hand-offs, and drain each client's
//! [`Outbox`](crate::state::Outbox). It never touches a socket or a runtime, so the same
//! code runs under io_uring and epoll, and tests drive it with an injected clock.
//!
//! Cost of a delivered channel message (the hot path, `PRIVMSG #c`): one directory lock
//! to check the sender and read the shard set; one allocation to serialize the line
//! into `Bytes`; per local recipient a reference-count increment and a queue push
//! (no allocation: outboxes keep a small capacity), and at most one writer wake-up; per
//! other shard with members one `Handoff` pushed to a batch that is flushed once per
//! tick. The write itself is one `writev` per connection per tick, whatever the
//! number of lines queued.

pub mod handoff;
pub mod outgoing;

use crate::proto::framing::{Frame, LineLimits};
use crate::proto::{Caseless, CaselessKey, LineBuilder, Message};
use crate::state::client::{Client, CloseReason};
use crate::state::flood::TokenBucket;
use crate::state::shared::CounterSnapshot;
use crate::state::slab::Slab;
use crate::state::{ClientId, ShardSet, Shared};
use bytes::Bytes;
use handoff::Handoff;
use outgoing::Outgoing;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use tracing::{debug, info, warn};

/// The server refused a connection because `--max-clients` are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server is full")]
pub struct ServerFull;

/// One shard's state; see the module comment.
pub struct Shard {
    /// This shard's number.
    pub id: u16,
    /// State shared with the other shards.
    pub shared: Arc<Shared>,
    /// Connections living on this shard.
    clients: Slab<Client>,
    /// For each channel with members here, those members.
    local_members: HashMap<CaselessKey, Vec<ClientId>>,
    /// Hand-offs owed to each other shard, flushed once per tick.
    outgoing: Vec<Vec<Handoff>>,
    /// The task that flushes `outgoing`, parked while there is nothing to send.
    handoff_flusher: Option<Waker>,
    /// Clients whose input waits for flood tokens.
    throttled: Vec<ClientId>,
    /// Clients to close once the current handler returns (a slow consumer found
    /// during a fan-out cannot be closed in the middle of it).
    doomed: Vec<(ClientId, CloseReason)>,
    /// Spare write batches: a writer borrows one while it has lines to write, so idle
    /// connections hold no batch (ARCHITECTURE.md invariant 9).
    batch_pool: Vec<Vec<Bytes>>,
    /// Bumped per multi-channel fan-out so each client gets such a line once.
    stamp: u32,
    /// Local counts, published to `shared.counters` by [`Shard::publish_counters`].
    counts: CounterSnapshot,
}

impl Shard {
    /// An empty shard.
    pub fn new(id: u16, shared: Arc<Shared>) -> Shard {
        let shards = shared.config.shards;
        Shard {
            id,
            shared,
            clients: Slab::default(),
            local_members: HashMap::new(),
            outgoing: (0..shards).map(|_| Vec::new()).collect(),
            handoff_flusher: None,
            throttled: Vec::new(),
            doomed: Vec::new(),
            batch_pool: Vec::new(),
            stamp: 0,
            counts: CounterSnapshot::default(),
        }
    }

    // ---- driver-facing lifecycle ---------------------------------------------------

    /// Admits a new connection, or refuses it when the server is full.
    pub fn accept(&mut self, peer: SocketAddr, now: Instant) -> Result<ClientId, ServerFull> {
        let max = self.shared.config.max_clients;
        let admitted =
            self.shared
                .connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (open < max).then_some(open + 1)
                });
        if admitted.is_err() {
            return Err(ServerFull);
        }
        let shard = self.id;
        let bucket = TokenBucket::new(self.shared.config.flood_policy(), now);
        let slot = self
            .clients
            .insert_with(|slot| Client::new(ClientId { shard, slot }, peer.ip(), bucket, now));
        self.counts.accepted += 1;
        Ok(ClientId { shard, slot })
    }

    /// Feeds bytes read from a client's socket.
    pub fn receive(&mut self, id: ClientId, data: &[u8], now: Instant) {
        let Some(client) = live(&mut self.clients, id) else {
            return;
        };
        client.last_input = now;
        client.ping_sent = false;
        if client.throttled {
            client.input.extend_from_slice(data);
        } else if client.input.is_empty() {
            let consumed = self.process_lines(id, data, now);
            if let Some(client) = self.clients.get_mut(id.slot) {
                if !client.closing {
                    client.input.extend_from_slice(&data[consumed..]);
                }
            }
        } else {
            client.input.extend_from_slice(data);
            self.process_buffered(id, now);
        }
        self.check_recvq(id);
        self.close_doomed();
    }

    /// The peer closed or reset the connection (a read returned 0 or failed).
    pub fn peer_closed(&mut self, id: ClientId) {
        self.close(id, CloseReason::ConnectionClosed);
        self.close_doomed();
    }

    /// A write failed: treat it as the peer going away.
    pub fn write_failed(&mut self, id: ClientId, error: &std::io::Error) {
        debug!(client = ?id, %error, "write failed");
        if let Some(client) = self.clients.get_mut(id.slot) {
            client.outbox.discard_queued();
        }
        self.peer_closed(id);
    }

    /// The writer finished: the connection is gone and its slot is freed.
    pub fn release(&mut self, id: ClientId) {
        if self.clients.remove(id.slot).is_some() {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A client, if it is still connected.
    pub fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(id.slot)
    }

    /// Mutable access to a client, for its writer.
    pub fn client_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        self.clients.get_mut(id.slot)
    }

    /// How many connections live here.
    pub fn connection_count(&self) -> usize {
        self.clients.len()
    }

    /// Records a completed read.
    pub fn note_read(&mut self) {
        self.counts.reads += 1;
    }

    /// Records a TLS connection whose handshake failed.
    pub fn note_tls_handshake_failure(&mut self) {
        self.counts.tls_handshake_failures += 1;
    }

    /// Records a completed vectored write and the bytes the kernel accepted.
    pub fn note_written(&mut self, bytes: usize) {
        self.counts.writes += 1;
        self.counts.bytes_out += bytes as u64;
    }

    /// Lends a writer an empty batch vector.
    pub fn take_batch_vec(&mut self) -> Vec<Bytes> {
        self.batch_pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(crate::io::MAX_BATCH_LINES))
    }

    /// Takes back an empty batch vector (keeping at most a few spare).
    pub fn return_batch_vec(&mut self, batch: Vec<Bytes>) {
        if batch.is_empty() && self.batch_pool.len() < MAX_SPARE_BATCHES {
            self.batch_pool.push(batch);
        }
    }

    // ---- timers --------------------------------------------------------------------

    /// Whether some client waits for flood tokens (the driver then ticks often).
    pub fn has_throttled(&self) -> bool {
        !self.throttled.is_empty()
    }

    /// Lets throttled clients' waiting lines through as tokens allow.
    pub fn resume_throttled(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.throttled) {
            let Some(client) = self.clients.get_mut(id.slot) else {
                continue;
            };
            client.throttled = false;
            self.process_buffered(id, now);
        }
        self.close_doomed();
    }

    /// Registration timeouts, liveness PINGs and ping timeouts; run about once a second.
    pub fn check_liveness(&mut self, now: Instant) {
        let config = &self.shared.config;
        let mut expired = Vec::new();
        let ping = LineBuilder::sourceless("PING")
            .trailing(&config.server_name)
            .finish();
        for client in self.clients.iter_mut().filter(|c| !c.closing) {
            if !client.is_registered() {
                if now.saturating_duration_since(client.connected_at) >= config.registration_timeout
                {
                    expired.push((client.id, CloseReason::Server("Registration timed out")));
                }
                continue;
            }
            let quiet = now.saturating_duration_since(client.last_input);
            if client.ping_sent && quiet >= config.ping_interval + config.ping_timeout {
                expired.push((client.id, CloseReason::Server("Ping timeout")));
            } else if !client.ping_sent && quiet >= config.ping_interval {
                client.ping_sent = true;
                if client.outbox.push(ping.clone(), config.sendq).is_err() {
                    expired.push((client.id, CloseReason::Server("SendQ exceeded")));
                }
            }
        }
        self.doomed.extend(expired);
        self.close_doomed();
    }

    /// Publishes this shard's counters for readers on other threads.
    pub fn publish_counters(&mut self) {
        self.counts.connections = self.clients.len() as u64;
        if let Some(counters) = self.shared.counters.get(self.id as usize) {
            counters.publish(&self.counts);
        }
    }

    // ---- shutdown ------------------------------------------------------------------

    /// Tells every client the server is going away and closes them (no QUITs are
    /// relayed: everyone is leaving).
    pub fn begin_shutdown(&mut self) {
        let ids: Vec<ClientId> = self.clients.iter().map(|c| c.id).collect();
        for id in ids {
            self.close_quietly(id, "Server shutting down");
        }
    }

    // ---- cross-shard ---------------------------------------------------------------

    /// Whether hand-offs wait to be flushed.
    pub fn has_outgoing(&self) -> bool {
        self.outgoing.iter().any(|batch| !batch.is_empty())
    }

    /// Parks the hand-off flusher until something is owed to another shard.
    pub fn park_handoff_flusher(&mut self, waker: &Waker) {
        self.handoff_flusher = Some(waker.clone());
    }

    /// Sends each pending batch to its shard: one lock and one wake-up per shard.
    pub fn flush_handoffs(&mut self) {
        for (shard, batch) in self.outgoing.iter_mut().enumerate() {
            if !batch.is_empty() {
                self.shared.bus.send_batch(shard as u16, batch);
            }
        }
    }

    /// Applies a hand-off from another shard. Returns `true` for [`Handoff::Shutdown`].
    pub fn apply(&mut self, handoff: Handoff) -> bool {
        match handoff {
            Handoff::Channel {
                channel,
                mut message,
                except,
            } => self.deliver_local(Caseless::new(channel.as_str()), &mut message, except),
            Handoff::Channels {
                channels,
                mut message,
                except,
            } => self.deliver_local_once(&channels, &mut message, except),
            Handoff::Client { to, mut message } => self.send_message(to, &mut message),
            Handoff::RemoveMember { channel, member } => {
                self.remove_local_member(Caseless::new(channel.as_str()), member)
            }
            Handoff::Shutdown => return true,
        }
        self.close_doomed();
        false
    }

    // ---- delivery (handler-facing) -------------------------------------------------

    /// Queues `line` for client `id` of this shard. A client past its sendq is marked
    /// for closing once the current handler is done.
    pub fn send(&mut self, id: ClientId, line: Bytes) {
        push_line(
            &mut self.clients,
            &mut self.doomed,
            &mut self.counts,
            self.shared.config.sendq,
            id,
            line,
        );
    }

    /// Queues `message` for local client `id` in the variant its capabilities ask for.
    pub fn send_message(&mut self, id: ClientId, message: &mut Outgoing) {
        let Some(caps) = self.clients.get(id.slot).map(|c| c.caps) else {
            return;
        };
        if let Some(line) = message.for_recipient(caps) {
            self.send(id, line);
        }
    }

    /// Queues `message` for `id`, wherever it lives.
    pub fn send_anywhere(&mut self, id: ClientId, mut message: Outgoing) {
        if id.shard == self.id {
            self.send_message(id, &mut message);
        } else {
            self.hand_off(id.shard, Handoff::Client { to: id, message });
        }
    }

    /// Delivers `message` to every member of `channel` except `except`: local members
    /// now, other shards through one hand-off each.
    pub fn deliver_to_channel(
        &mut self,
        channel: &Caseless,
        shards: ShardSet,
        message: Outgoing,
        except: Option<ClientId>,
    ) {
        let me = self.id;
        if shards.iter().any(|s| s != me) {
            self.deliver_to_channel_key(
                &CaselessKey::new(channel.as_str()),
                shards,
                message,
                except,
            );
        } else {
            self.deliver_local(channel, &mut { message }, except);
        }
    }

    /// [`Shard::deliver_to_channel`] for a caller that holds the channel's key (the
    /// message hot path): the hand-offs share it instead of allocating a copy.
    pub fn deliver_to_channel_key(
        &mut self,
        channel: &CaselessKey,
        shards: ShardSet,
        mut message: Outgoing,
        except: Option<ClientId>,
    ) {
        self.deliver_local(Caseless::new(channel.as_str()), &mut message, except);
        let me = self.id;
        for shard in shards.iter().filter(|&s| s != me) {
            self.hand_off(
                shard,
                Handoff::Channel {
                    channel: channel.clone(),
                    message: message.clone(),
                    except,
                },
            );
        }
    }

    /// Delivers `message` once to each member of any of `channels` except `except`.
    pub fn deliver_to_channels(
        &mut self,
        channels: &[CaselessKey],
        shards: ShardSet,
        mut message: Outgoing,
        except: Option<ClientId>,
    ) {
        self.deliver_local_once(channels, &mut message, except);
        let me = self.id;
        let remote: Vec<u16> = shards.iter().filter(|&s| s != me).collect();
        if remote.is_empty() {
            return;
        }
        let channels: Box<[CaselessKey]> = channels.into();
        for shard in remote {
            self.hand_off(
                shard,
                Handoff::Channels {
                    channels: channels.clone(),
                    message: message.clone(),
                    except,
                },
            );
        }
    }

    /// Records that local client `id` is now a member of `channel`.
    pub fn add_local_member(&mut self, channel: &CaselessKey, id: ClientId) {
        self.local_members
            .entry(channel.clone())
            .or_default()
            .push(id);
    }

    /// Records that local client `id` left `channel`.
    pub fn remove_local_member(&mut self, channel: &Caseless, id: ClientId) {
        if let Some(members) = self.local_members.get_mut(channel) {
            members.retain(|&member| member != id);
            if members.is_empty() {
                self.local_members.remove(channel);
            }
        }
    }

    /// Forgets `member`'s membership of `channel` in its own shard's index, wherever
    /// it lives (KICK removes someone else). For a remote member the hand-off follows
    /// any line already handed to that shard, so the member still sees the KICK.
    pub fn remove_member_anywhere(&mut self, channel: &CaselessKey, member: ClientId) {
        if member.shard == self.id {
            self.remove_local_member(Caseless::new(channel.as_str()), member);
        } else {
            self.hand_off(
                member.shard,
                Handoff::RemoveMember {
                    channel: channel.clone(),
                    member,
                },
            );
        }
    }

    /// Closes a client: relays its QUIT, queues the final ERROR, and lets the writer
    /// flush and shut the socket.
    pub fn close(&mut self, id: ClientId, reason: CloseReason) {
        let Some(client) = live(&mut self.clients, id) else {
            return;
        };
        let text = match &reason {
            CloseReason::Quit(message) => format!("Quit: {message}"),
            CloseReason::ConnectionClosed => "Connection closed".to_owned(),
            CloseReason::Server(why) => (*why).to_owned(),
        };
        if client.is_registered() {
            let quit = Outgoing::new(
                LineBuilder::from_source(client.source(), "QUIT")
                    .trailing(&text)
                    .finish(),
            );
            let audience = self.shared.directory().remove_user(id);
            for channel in &audience.channels {
                self.remove_local_member(Caseless::new(channel.as_str()), id);
            }
            if matches!(reason, CloseReason::Quit(_)) {
                self.send_message(id, &mut quit.clone());
            }
            self.deliver_to_channels(&audience.channels, audience.shards, quit, Some(id));
        }
        match &reason {
            CloseReason::Server(why) => warn!(client = ?id, reason = why, "disconnecting client"),
            _ => debug!(client = ?id, reason = %text, "client leaving"),
        }
        if reason == CloseReason::Server(SENDQ_EXCEEDED) {
            self.counts.sendq_disconnects += 1;
        } else if reason == CloseReason::Server(EXCESS_FLOOD) {
            self.counts.flood_disconnects += 1;
        }
        self.close_quietly(id, &text);
    }

    /// Ends a connection without relaying anything: releases a registering client's
    /// nickname, queues `ERROR`, and wakes the writer to flush and shut down.
    fn close_quietly(&mut self, id: ClientId, why: &str) {
        let Some(client) = live(&mut self.clients, id) else {
            return;
        };
        client.closing = true;
        client.throttled = false;
        client.input = Vec::new();
        if let Some(nick) = client.registration.as_ref().and_then(|r| r.nick.as_deref()) {
            self.shared.directory().release_nick(id, nick);
        } else if client.is_registered() {
            self.shared.directory().remove_user(id);
        }
        let error = LineBuilder::sourceless("ERROR")
            .trailing(format!("Closing Link: {} ({why})", client.host))
            .finish();
        if why == SENDQ_EXCEEDED {
            client.outbox.discard_queued();
        }
        // The final ERROR goes out even past the sendq: it is the last line.
        let _ = client.outbox.push(error, usize::MAX);
        client.outbox.wake_writer();
    }

    // ---- internals -----------------------------------------------------------------

    fn hand_off(&mut self, shard: u16, handoff: Handoff) {
        let Some(batch) = self.outgoing.get_mut(shard as usize) else {
            return;
        };
        batch.push(handoff);
        if let Some(flusher) = self.handoff_flusher.take() {
            flusher.wake();
        }
    }

    fn deliver_local(
        &mut self,
        channel: &Caseless,
        message: &mut Outgoing,
        except: Option<ClientId>,
    ) {
        let Some(members) = self.local_members.get(channel) else {
            return;
        };
        for &member in members {
            if Some(member) != except {
                deliver_one(
                    &mut self.clients,
                    &mut self.doomed,
                    &mut self.counts,
                    self.shared.config.sendq,
                    member,
                    message,
                );
            }
        }
    }

    fn deliver_local_once(
        &mut self,
        channels: &[CaselessKey],
        message: &mut Outgoing,
        except: Option<ClientId>,
    ) {
        self.stamp = self.stamp.wrapping_add(1);
        let stamp = self.stamp;
        for channel in channels {
            let Some(members) = self.local_members.get(Caseless::new(channel.as_str())) else {
                continue;
            };
            for &member in members {
                if Some(member) == except {
                    continue;
                }
                let Some(client) = self.clients.get_mut(member.slot) else {
                    continue;
                };
                if client.delivery_stamp == stamp {
                    continue;
                }
                client.delivery_stamp = stamp;
                deliver_one(
                    &mut self.clients,
                    &mut self.doomed,
                    &mut self.counts,
                    self.shared.config.sendq,
                    member,
                    message,
                );
            }
        }
    }

    /// Frames and handles lines from `data` while flood tokens last; returns how many
    /// bytes were consumed (the rest waits in the client's input).
    fn process_lines(&mut self, id: ClientId, data: &[u8], now: Instant) -> usize {
        let policy = self.shared.config.flood_policy();
        let mut at = 0;
        loop {
            let Some(client) = live(&mut self.clients, id) else {
                return data.len();
            };
            let Some((frame, used)) = client.framer.next(&data[at..], LineLimits::IRC) else {
                return at;
            };
            match frame {
                Frame::Line(line) => {
                    if !client.flood.try_take(policy, now) {
                        client.throttled = true;
                        self.throttled.push(id);
                        return at;
                    }
                    at += used;
                    self.counts.lines_in += 1;
                    self.handle_line(id, line, now);
                }
                Frame::TooLong => {
                    at += used;
                    crate::commands::input_too_long(self, id, now);
                }
                Frame::Nul | Frame::Skipped => at += used,
            }
        }
    }

    /// Processes lines waiting in the client's own input buffer.
    fn process_buffered(&mut self, id: ClientId, now: Instant) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        let input = std::mem::take(&mut client.input);
        let consumed = self.process_lines(id, &input, now);
        if let Some(client) = self.clients.get_mut(id.slot) {
            if !client.closing {
                client.input = input;
                client.input.drain(..consumed);
                if client.input.is_empty() && client.input.capacity() > 1024 {
                    client.input = Vec::new();
                }
            }
        }
    }

    fn check_recvq(&mut self, id: ClientId) {
        let recvq = self.shared.config.recvq;
        if let Some(client) = self.clients.get(id.slot) {
            if !client.closing && client.input.len() > recvq {
                self.doomed.push((id, CloseReason::Server(EXCESS_FLOOD)));
            }
        }
    }

    fn handle_line(&mut self, id: ClientId, line: &[u8], now: Instant) {
        match Message::parse(line) {
            Ok(message) => crate::commands::dispatch(self, id, &message, now),
            Err(error) => debug!(client = ?id, %error, "unparsable line ignored"),
        }
    }

    fn close_doomed(&mut self) {
        while let Some((id, reason)) = self.doomed.pop() {
            self.close(id, reason);
        }
    }

    /// Logs how many connections this shard holds (at shutdown).
    pub fn log_summary(&self) {
        info!(
            shard = self.id,
            connections = self.clients.len(),
            accepted = self.counts.accepted,
            deliveries = self.counts.deliveries,
            "shard stopping"
        );
    }
}

/// Spare write batches a shard keeps (each 256 × 32 bytes).
const MAX_SPARE_BATCHES: usize = 64;

/// The QUIT reason of a slow consumer.
pub const SENDQ_EXCEEDED: &str = "SendQ exceeded";
/// The QUIT reason of a client whose unprocessed input passed the recvq.
pub const EXCESS_FLOOD: &str = "Excess Flood";

/// A client that is connected and not closing: the only kind that takes input or
/// output.
fn live(clients: &mut Slab<Client>, id: ClientId) -> Option<&mut Client> {
    clients.get_mut(id.slot).filter(|client| !client.closing)
}

/// Queues the variant of `message` that a client's capabilities ask for; a free
/// function so fan-out loops can borrow the member index and the client slab at once.
fn deliver_one(
    clients: &mut Slab<Client>,
    doomed: &mut Vec<(ClientId, CloseReason)>,
    counts: &mut CounterSnapshot,
    sendq: usize,
    id: ClientId,
    message: &mut Outgoing,
) {
    let Some(caps) = clients.get(id.slot).map(|c| c.caps) else {
        return;
    };
    if let Some(line) = message.for_recipient(caps) {
        push_line(clients, doomed, counts, sendq, id, line);
    }
}

/// Queues a line for one client, marking a slow consumer for closing.
fn push_line(
    clients: &mut Slab<Client>,
    doomed: &mut Vec<(ClientId, CloseReason)>,
    counts: &mut CounterSnapshot,
    sendq: usize,
    id: ClientId,
    line: Bytes,
) {
    let Some(client) = live(clients, id) else {
        return;
    };
    match client.outbox.push(line, sendq) {
        Ok(()) => counts.deliveries += 1,
        Err(_) => {
            client.outbox.discard_queued();
            doomed.push((id, CloseReason::Server(SENDQ_EXCEEDED)));
        }
    }
}
