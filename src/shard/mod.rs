//! One core's share of the server: its clients, its members of each channel, its
//! place in the event log (and the node's replica as of it), and the hand-offs it
//! owes other shards.
//!
//! [`Shard`] is the sans-IO core (ARCHITECTURE.md invariant 7): drivers feed it
//! accepted peers, received bytes, timer ticks and wake-ups, and drain each client's
//! [`Outbox`](crate::state::Outbox). It never touches a socket or a runtime, so the
//! same code runs under io_uring and epoll, and tests drive it with an injected clock.
//!
//! Split by concern: this file is the connection lifecycle, input framing and flood
//! control, and delivery; [`sync`] keeps the replica in step with the event log and
//! exchanges hand-offs with other shards; [`notify`] tells local clients what an
//! applied event changed; `accounts` offloads slow authentication work and stores
//! account events.
//!
//! Cost of a delivered channel message (the hot path, `PRIVMSG #c`): two ordered-map
//! lookups in the replica version this shard reads (the channel, the sender's
//! membership) to check and route, and one hash lookup of this shard's members of
//! the channel, no lock; one allocation to serialize the line into `Bytes`; per local
//! recipient a reference-count increment and a queue push (no allocation: outboxes
//! keep a small capacity) and at most one writer wake-up; per other shard with
//! members one hand-off pushed to a batch that is sent once per scheduler pass. The
//! write itself is one `writev` per connection per pass, whatever the number of lines.

mod accounts;
pub mod monitor;
pub use accounts::AuthCount;
pub mod notify;
pub mod sync;

use crate::proto::framing::{Frame, LineLimits};
use crate::proto::outgoing::{MsgId, Outgoing};
use crate::proto::{CaselessKey, LineBuilder};
use crate::state::bus::{Batch, Handoff, Links};
use crate::state::client::{Client, CloseReason};
use crate::state::flood::TokenBucket;
use crate::state::local_members::LocalMembers;
use crate::state::log::LogReader;
use crate::state::network::{Network, ShardSet};
use crate::state::outbox::BatchPool;
use crate::state::shared::CounterSnapshot;
use crate::state::slab::Slab;
use crate::state::sources::SourceRefusal;
use crate::state::{ClientId, Shared};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Why a connection was not admitted; the text is what its `ERROR` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `--max-clients` are connected.
    #[error("Server is full")]
    ServerFull,
    /// A per-source limit.
    #[error(transparent)]
    Source(#[from] SourceRefusal),
    /// A DLINE covers the address.
    #[error("D-Lined")]
    Banned,
}

/// What a shard hands a framed input line to: the command layer (`commands::handle`).
/// Injected at construction so the core does not depend on the commands built on it
/// (dependencies point one way: commands use the shard, never the reverse).
pub type LineHandler = fn(&mut Shard, ClientId, Input<'_>, Instant);

/// One framed unit of client input.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A complete line, without its line ending.
    Line(&'a [u8]),
    /// A line over the length limits, already discarded (417).
    TooLong,
    /// Work the client asked for finished off the shard (a password checked or
    /// hashed, an account stored): the rest of its command continues.
    Finished(&'a crate::state::offload::Finished),
}

/// One shard's state; see the module comment.
pub struct Shard {
    /// This shard's number.
    pub id: u16,
    /// This node's number in its cluster (0 when alone).
    pub node: u16,
    /// State shared with the other shards.
    pub shared: Arc<Shared>,
    /// Handles framed input lines; see [`LineHandler`].
    handle_line: LineHandler,
    /// Connections living on this shard.
    clients: Slab<Client>,
    /// Where this shard is in the event log, and the node's network replica as of
    /// that position (what this shard reads).
    log: LogReader,
    /// This shard's members of each channel, kept by taking in the log.
    local_members: LocalMembers,
    /// This shard's ends of the links to and from every other shard.
    links: Links,
    /// Hand-offs owed to each other shard, sent once per scheduler pass.
    outgoing: Vec<Batch>,
    /// Hand-offs received from each other shard and not yet handled.
    inbound: Vec<Batch>,
    /// The task that sends `outgoing`, parked while there is nothing to send.
    handoff_flusher: Option<Waker>,
    /// Clients whose input waits for flood tokens or for a congested link.
    throttled: Vec<ClientId>,
    /// Clients to close once the current handler returns (a slow consumer found
    /// during a fan-out cannot be closed in the middle of it).
    doomed: Vec<(ClientId, CloseReason)>,
    /// Spare write batches for writers.
    batch_pool: BatchPool,
    /// Sockets of stalled connections, for the driver to reset.
    stalled: Vec<std::os::fd::RawFd>,
    /// Bumped per multi-channel fan-out so each client gets such a line once.
    stamp: u32,
    /// Messages this shard has given an id ([`Shard::next_msgid`]).
    msgids_issued: u64,
    /// The server's start time in Unix microseconds, the first part of every msgid.
    started_micros: u64,
    /// Which local clients MONITOR each nickname; see [`monitor`].
    monitors: monitor::Watchers,
    /// Local counts, published to `shared.counters` by [`Shard::publish_counters`].
    counts: CounterSnapshot,
    /// Proposals this shard has sent to the cluster, numbering them.
    proposals: u64,
    /// Proposals the cluster link could not order (see [`Handoff::Unordered`]).
    unordered: Vec<u64>,
    /// Outcomes of this shard's cluster proposals, by proposal number, until the
    /// waiting proposer takes its own.
    answered: Vec<(u64, crate::state::network::Outcome)>,
    /// Local users holding a registered nick without being logged in to its
    /// account, and when their grace period ends (`--nick-grace`); at most one entry
    /// per client, dropped when it is renamed or found logged in.
    nick_deadlines: Vec<(ClientId, Instant)>,
    /// Guest nicks this shard has handed out, numbering the next.
    guests: u64,
}

impl Shard {
    /// An empty shard. Each shard is built once: it takes its own log reader and
    /// links from `shared`.
    pub fn new(id: u16, shared: Arc<Shared>, handle_line: LineHandler) -> Shard {
        let endpoints = shards_and_link(&shared);
        let log = shared
            .take_log_reader(id)
            .expect("each shard is built once, with a log reader of its own");
        let links = shared
            .bus
            .take_links(id)
            .expect("each shard is built once, with links of its own");
        Shard {
            id,
            node: shared.node(),
            handle_line,
            clients: Slab::default(),
            local_members: LocalMembers::of_place(log.network(), id),
            log,
            links,
            outgoing: (0..endpoints).map(|_| Batch::new()).collect(),
            inbound: (0..endpoints).map(|_| Batch::new()).collect(),
            handoff_flusher: None,
            throttled: Vec::new(),
            doomed: Vec::new(),
            batch_pool: BatchPool::default(),
            stalled: Vec::new(),
            stamp: 0,
            msgids_issued: 0,
            started_micros: shared
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            monitors: monitor::Watchers::default(),
            counts: CounterSnapshot::default(),
            proposals: 0,
            unordered: Vec::new(),
            answered: Vec::new(),
            nick_deadlines: Vec::new(),
            guests: 0,
            shared,
        }
    }

    /// Whether client `id` lives on this shard of this node.
    pub fn is_local(&self, id: ClientId) -> bool {
        id.shard == self.id && id.node == self.node
    }

    /// The node's network replica as of this shard's position in the log, for
    /// reading.
    pub fn network(&self) -> &Network {
        self.log.network()
    }

    /// The same version as [`Shard::network`], held (a reference-count increment):
    /// for a reply that reads the replica while it writes to the shard.
    pub fn network_version(&self) -> std::sync::Arc<Network> {
        self.log.network().clone()
    }

    /// A fresh message id (IRCv3 `message-ids`) for a message this shard relays: the
    /// shard and its own counter make it unique in the process without any shared
    /// counter, and the server's start time makes it unique across restarts.
    pub fn next_msgid(&mut self) -> MsgId {
        self.msgids_issued += 1;
        // Node and shard in one number (shards < 64 < 2^7), so ids from the nodes of
        // a cluster never collide; alone, the node is 0 and this is the shard.
        let origin = (self.node << 7) | self.id;
        MsgId::new(self.started_micros, origin, self.msgids_issued)
    }

    // ---- driver-facing lifecycle ---------------------------------------------------

    /// Admits a new connection, or says why not (a DLINE, `--max-clients`, per-source
    /// limits); each limit's refusal is counted by cause.
    pub fn accept(&mut self, peer: SocketAddr, now: Instant) -> Result<ClientId, Refused> {
        let now_unix = crate::proto::time::unix_seconds(std::time::SystemTime::now());
        if let Some(ban) = self
            .log
            .network()
            .server_bans()
            .address_ban(peer.ip(), now_unix)
        {
            debug!(%peer, reason = %ban.reason, "D-Lined connection refused");
            self.counts.refused_banned += 1;
            return Err(Refused::Banned);
        }
        let max = self.shared.live.max_clients();
        let admitted =
            self.shared
                .connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (open < max).then_some(open + 1)
                });
        if admitted.is_err() {
            self.counts.refused_full += 1;
            return Err(Refused::ServerFull);
        }
        let admission = match self.shared.sources.admit(peer.ip(), now) {
            Ok(admission) => admission,
            Err(refusal) => {
                self.shared.connections.fetch_sub(1, Ordering::AcqRel);
                match refusal {
                    SourceRefusal::TooManyConnections => self.counts.refused_per_source += 1,
                    SourceRefusal::TooFast => self.counts.refused_too_fast += 1,
                    SourceRefusal::TooManyUnregistered | SourceRefusal::ServerBusy => {
                        self.counts.refused_unregistered += 1
                    }
                }
                return Err(refusal.into());
            }
        };
        let (node, shard) = (self.node, self.id);
        let bucket = TokenBucket::new(self.shared.live.flood_policy(), now);
        let slot = self.clients.insert_with(|slot| {
            Client::new(
                ClientId { node, shard, slot },
                peer.ip(),
                admission,
                bucket,
                now,
            )
        });
        self.counts.accepted += 1;
        Ok(ClientId { node, shard, slot })
    }

    /// `id` completed registration: it no longer counts as unregistered against its
    /// source.
    pub fn mark_registered(&mut self, id: ClientId) {
        if let Some(client) = self.clients.get_mut(id.slot) {
            self.shared.sources.registered(&mut client.admission);
        }
    }

    /// Feeds bytes read from a client's socket. Once shutdown has begun, input is no
    /// longer accepted: what a client sends after that is not acted on.
    pub fn receive(&mut self, id: ClientId, data: &[u8], now: Instant) {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return;
        }
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
        if let Some(client) = self.clients.remove(id.slot) {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            self.shared
                .sources
                .release(client.admission, Instant::now());
        }
    }

    /// A client, if it is still connected.
    pub fn client(&self, id: ClientId) -> Option<&Client> {
        if !self.is_local(id) {
            return None;
        }
        self.clients.get(id.slot)
    }

    /// Mutable access to a client, for its writer.
    pub fn client_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        if !self.is_local(id) {
            return None;
        }
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

    /// Records `io_uring_enter` calls made by a completion-loop driver.
    pub fn note_enters(&mut self, count: u64) {
        self.counts.enters += count;
    }

    /// Records a receive that found every provided buffer in use (ring driver).
    pub fn note_receive_buffer_wait(&mut self) {
        self.counts.receive_buffer_waits += 1;
    }

    /// Records a completed vectored write to `id` and the bytes the kernel accepted:
    /// the connection's output is flowing.
    ///
    /// The bytes are the socket's (ciphertext under TLS); the writer reports lines
    /// taken from the outbox with [`Outbox::wrote`](crate::state::Outbox::wrote).
    pub fn note_written(&mut self, id: ClientId, bytes: usize) {
        self.counts.writes += 1;
        self.counts.bytes_out += bytes as u64;
        if bytes > 0 {
            if let Some(client) = self.clients.get_mut(id.slot) {
                client.stalled_since = None;
            }
        }
    }

    /// Records the socket of a newly accepted connection (see [`Client::socket`]).
    pub fn set_socket(&mut self, id: ClientId, socket: std::os::fd::RawFd) {
        if let Some(client) = self.clients.get_mut(id.slot) {
            client.socket = Some(socket);
        }
    }

    /// The sockets of connections found stalled since the last call, for the driver
    /// to reset. Only connections whose slot still exists are listed, so each
    /// descriptor is still theirs.
    pub fn take_stalled_sockets(&mut self) -> Vec<std::os::fd::RawFd> {
        std::mem::take(&mut self.stalled)
    }

    /// Events this shard has proposed so far (the command layer charges for them).
    pub fn events_proposed(&self) -> u64 {
        self.counts.events_proposed
    }

    /// The shard's pool of write batches, for its writers.
    pub fn batch_pool(&mut self) -> &mut BatchPool {
        &mut self.batch_pool
    }

    // ---- timers --------------------------------------------------------------------

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
    }

    /// Tells this shard's operators who sent REHASH how the reload went (see
    /// [`Rehash`](crate::state::rehash::Rehash)); one atomic load when nobody waits.
    fn answer_rehashes(&mut self) {
        for (id, outcome) in self.shared.rehash.take_answers(self.node, self.id) {
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
    fn propose_reloaded_bans(&mut self) {
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

    // ---- shutdown ------------------------------------------------------------------

    /// Tells every client the server is going away and closes them (no QUITs are
    /// relayed: everyone is leaving, so the network state is left as it is).
    pub fn begin_shutdown(&mut self) {
        let ids: Vec<ClientId> = self.clients.iter().map(|c| c.id).collect();
        for id in ids {
            self.close_quietly(id, crate::proto::closing::SERVER_SHUTTING_DOWN);
        }
    }

    // ---- delivery (handler-facing) -------------------------------------------------

    /// Queues `line` for client `id` of this shard. A client past its sendq is marked
    /// for closing once the current handler is done.
    pub fn send(&mut self, id: ClientId, line: Bytes) {
        push_line(
            &mut self.clients,
            &mut self.doomed,
            &mut self.counts,
            self.shared.live.sendq(),
            id,
            line,
        );
    }

    /// Queues `message` for local client `id` in the variant its capabilities ask for.
    pub fn send_message(&mut self, id: ClientId, message: &mut Outgoing) {
        deliver_one(
            &mut self.clients,
            &mut self.doomed,
            &mut self.counts,
            self.shared.live.sendq(),
            id,
            message,
        );
    }

    /// Queues `message` for `id`, wherever it lives.
    pub fn send_anywhere(&mut self, id: ClientId, mut message: Outgoing) {
        if self.is_local(id) {
            self.send_message(id, &mut message);
        } else if id.node == self.node {
            self.hand_off(id.shard, Handoff::Client { to: id, message });
        } else if let Some(link) = self.link_endpoint() {
            self.hand_off(link, Handoff::Client { to: id, message });
        }
    }

    /// The cluster link's bus endpoint, on a cluster node.
    pub(super) fn link_endpoint(&self) -> Option<u16> {
        self.shared.cluster.as_ref().map(|cluster| cluster.endpoint)
    }

    /// Delivers a channel message to every member of `channel` but `except` (the
    /// message hot path): this shard's members now, from its own member array;
    /// each other shard with members through one hand-off, which that shard fans out
    /// to its own members.
    pub fn deliver_to_channel(
        &mut self,
        channel: &CaselessKey,
        mut message: Outgoing,
        except: Option<ClientId>,
    ) {
        self.deliver_to_local_members(channel.as_str(), &mut message, except);
        let places = match self.log.network().channel(channel.as_str()) {
            Some(found) => found.members.shards(),
            None => return,
        };
        let (me, layout) = (self.id, self.log.network().layout());
        let mut nodes = ShardSet::default();
        for place in places.iter().filter(|&p| p != me) {
            match layout.remote_node(place) {
                Some(node) => nodes.insert(node),
                None => self.hand_off(
                    place,
                    Handoff::Channel {
                        channel: channel.clone(),
                        message: message.clone(),
                        except,
                    },
                ),
            }
        }
        if let (Some(link), false) = (self.link_endpoint(), nodes == ShardSet::default()) {
            self.hand_off(
                link,
                Handoff::Nodes {
                    nodes,
                    channel: channel.clone(),
                    message,
                    except,
                },
            );
        }
    }

    /// Delivers `message` to this shard's members of `channel` but `except` (only
    /// to those with the status a STATUSMSG asks for).
    fn deliver_to_local_members(
        &mut self,
        channel: &str,
        message: &mut Outgoing,
        except: Option<ClientId>,
    ) {
        let status = message.status_target();
        for (member, membership) in self.local_members.of(channel) {
            let unwanted = status.is_some_and(|s| !s.reaches(membership.op, membership.voice));
            if Some(member) != except && !unwanted {
                deliver_one(
                    &mut self.clients,
                    &mut self.doomed,
                    &mut self.counts,
                    self.shared.live.sendq(),
                    member,
                    message,
                );
            }
        }
    }

    /// Delivers `message` once to each of this shard's members of any of `channels`
    /// but `except` (QUIT, NICK, AWAY: one line however many channels are shared).
    fn deliver_to_local_members_once(
        &mut self,
        channels: &[CaselessKey],
        message: &mut Outgoing,
        except: Option<ClientId>,
    ) {
        self.stamp = self.stamp.wrapping_add(1);
        let stamp = self.stamp;
        for channel in channels {
            for member in self.local_members.ids_of(channel.as_str()) {
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
                    self.shared.live.sendq(),
                    member,
                    message,
                );
            }
        }
    }

    /// Closes a client: a registered user leaves the network (every shard relays its
    /// QUIT to the members who shared a channel with it, once each), the final ERROR
    /// is queued, and the writer flushes and shuts the socket.
    pub fn close(&mut self, id: ClientId, reason: CloseReason) {
        let Some(client) = live(&mut self.clients, id) else {
            return;
        };
        let text = match &reason {
            CloseReason::Quit(message) => format!("Quit: {message}"),
            CloseReason::ConnectionClosed => "Connection closed".to_owned(),
            CloseReason::Server(why) => (*why).to_owned(),
            CloseReason::Killed(why) => why.clone(),
        };
        client.closing = true;
        let leaving = self
            .shared
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.leaving.load(Ordering::Acquire));
        if leaving {
            // This node's `NodeLost` quits every user of it at once.
        } else if client.is_registered() {
            if matches!(reason, CloseReason::Quit(_)) {
                let quit = LineBuilder::from_source(client.source(), "QUIT")
                    .trailing(&text)
                    .finish();
                let _ = client.outbox.push(quit, usize::MAX);
            }
            self.propose(crate::state::network::Event::Quit {
                client: id,
                reason: text.as_str().into(),
            });
        } else if client
            .registration
            .as_ref()
            .is_some_and(|r| r.nick.is_some())
        {
            self.propose(crate::state::network::Event::ReleaseNick { client: id });
        }
        match &reason {
            CloseReason::Server(why) => warn!(client = ?id, reason = why, "disconnecting client"),
            CloseReason::Killed(why) => info!(client = ?id, reason = why, "client killed"),
            _ => debug!(client = ?id, reason = %text, "client leaving"),
        }
        if reason == CloseReason::Server(SENDQ_EXCEEDED) {
            self.counts.sendq_disconnects += 1;
        } else if reason == CloseReason::Server(EXCESS_FLOOD) {
            self.counts.flood_disconnects += 1;
        }
        self.close_quietly(id, &text);
    }

    /// Sends every registered local client a server NOTICE.
    pub(super) fn notice_everyone(&mut self, text: &str) {
        let server = self.shared.config.server_name.clone();
        let told: Vec<(ClientId, String)> = self
            .clients
            .iter()
            .filter(|client| client.is_registered() && !client.closing)
            .map(|client| (client.id, client.nick().to_owned()))
            .collect();
        for (id, nick) in told {
            let line = LineBuilder::from_source(&server, "NOTICE")
                .arg(&nick)
                .trailing(text)
                .finish();
            self.send(id, line);
        }
    }

    /// Closes every local client after the cluster applied `NodeLost` for this node
    /// (the others stopped hearing from it): the network has already quit them, so
    /// they are closed without proposing anything.
    pub(super) fn close_all_declared_lost(&mut self) {
        let ids: Vec<ClientId> = self.clients.iter().map(|client| client.id).collect();
        for id in ids {
            self.close_quietly(id, "This server lost its place in the cluster");
        }
    }

    /// Ends a connection without telling the network: queues `ERROR`, and wakes the
    /// writer to flush and shut down.
    fn close_quietly(&mut self, id: ClientId, why: &str) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        if client.outbox.is_finished() {
            return;
        }
        client.closing = true;
        client.throttled = false;
        client.input = Vec::new();
        let monitoring = std::mem::take(&mut client.monitoring);
        let error = crate::proto::closing::closing_link(&client.host, why);
        if why == SENDQ_EXCEEDED {
            client.outbox.discard_queued();
        }
        client.outbox.finish(error);
        self.monitors.forget(id, &monitoring);
    }

    // ---- input ---------------------------------------------------------------------

    /// Frames and handles lines from `data` while flood tokens last; returns how many
    /// bytes were consumed (the rest waits in the client's input).
    fn process_lines(&mut self, id: ClientId, data: &[u8], now: Instant) -> usize {
        let policy = self.shared.live.flood_policy();
        let mut at = 0;
        loop {
            if self.links_congested() {
                self.throttle(id);
                return at;
            }
            let Some(client) = live(&mut self.clients, id) else {
                return data.len();
            };
            if client.auth.as_ref().is_some_and(|auth| auth.in_flight) {
                // A password is with the workers: the client's next lines wait for
                // its answer, so replies keep the order of the commands (a PING
                // sent after AUTHENTICATE gets its PONG after 903 or 904). The
                // recvq bounds what waits.
                return at;
            }
            let Some((frame, used)) = client.framer.next(&data[at..], LineLimits::IRC) else {
                return at;
            };
            match frame {
                Frame::Line(line) => {
                    if !client.flood.try_take(policy, now) {
                        self.throttle(id);
                        return at;
                    }
                    at += used;
                    self.counts.lines_in += 1;
                    (self.handle_line)(self, id, Input::Line(line), now);
                }
                Frame::TooLong => {
                    at += used;
                    (self.handle_line)(self, id, Input::TooLong, now);
                }
                Frame::Nul | Frame::Skipped => at += used,
            }
        }
    }

    /// Marks `id`'s input as waiting; the housekeeping tick resumes it.
    fn throttle(&mut self, id: ClientId) {
        if let Some(client) = self.clients.get_mut(id.slot) {
            if !client.throttled {
                client.throttled = true;
                self.throttled.push(id);
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
        let recvq = self.shared.live.recvq();
        if let Some(client) = self.clients.get(id.slot) {
            if !client.closing && client.input.len() > recvq {
                self.doomed.push((id, CloseReason::Server(EXCESS_FLOOD)));
            }
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
            events_applied = self.counts.events_applied,
            "shard stopping"
        );
    }
}

/// The QUIT reason of a slow consumer.
pub const SENDQ_EXCEEDED: &str = "SendQ exceeded";
/// The QUIT reason of a client whose unprocessed input passed the recvq.
pub const EXCESS_FLOOD: &str = "Excess Flood";
/// The QUIT reason of a client whose output made no progress for `--write-timeout`.
pub const WRITE_TIMEOUT: &str = "Write timeout";

/// A client that is connected and not closing: the only kind that takes input or
/// output.
/// The bus endpoints a shard exchanges hand-offs with: every shard, and the cluster
/// link on a cluster node.
fn shards_and_link(shared: &Shared) -> usize {
    shared.config.shards + usize::from(shared.cluster.is_some())
}

fn live(clients: &mut Slab<Client>, id: ClientId) -> Option<&mut Client> {
    // Callers pass local ids only (fan-out walks this shard's own place; hand-offs
    // and `send_anywhere` check `is_local`): comparing the whole id here cost 76
    // instructions per member in the fan-out loop (+50%, `.ci/instructions-gate`).
    clients.get_mut(id.slot).filter(|client| !client.closing)
}

/// Queues the variant of `message` that a client's capabilities ask for; a free
/// function so fan-out loops can borrow the replica and the client slab at once.
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
