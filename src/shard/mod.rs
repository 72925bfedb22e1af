//! One core's share of the server: its clients, its members of each channel, its
//! place in the event log (and the node's replica as of it), and the hand-offs it
//! owes other shards.
//!
//! [`Shard`] is the sans-IO core (ARCHITECTURE.md invariant 7): drivers feed it
//! accepted peers, received bytes, timer ticks and wake-ups, and drain each client's
//! [`Outbox`](crate::state::Outbox). It never touches a socket or a runtime, so the
//! same code runs under io_uring and epoll, and tests drive it with an injected clock.
//!
//! Split by concern, one file each, all `impl Shard`: this file is the state and the
//! driver-facing connection lifecycle; `input` frames received bytes and applies
//! flood control; `delivery` queues lines for local clients, hand-offs for remote
//! ones and fans a message out to a channel; `closing` ends connections; `timers`
//! is what runs on the tick (timeouts, liveness, counters); [`sync`] keeps the
//! replica in step with the event log and exchanges hand-offs with other shards;
//! [`notify`] tells local clients what an applied event changed; `history` keeps
//! channel messages for CHATHISTORY; `accounts` offloads slow authentication work
//! and stores account events; [`shutdown`] is the sequence every driver steps
//! through.
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
mod closing;
mod delivery;
pub mod freeze;
mod history;
mod input;
pub mod monitor;
pub mod notify;
pub mod server_notices;
pub mod shutdown;
pub mod sync;
mod timers;

pub use accounts::AuthCount;
pub use history::unix_millis;

use crate::proto::outgoing::MsgId;
use crate::proto::snomask::NoticeKind;
use crate::state::bus::{Batch, Links};
use crate::state::client::{Client, CloseReason};
use crate::state::deferred::Mailbox;
use crate::state::flood::TokenBucket;
use crate::state::local_members::LocalMembers;
use crate::state::log::LogReader;
use crate::state::names_cache::NamesCache;
use crate::state::network::Network;
use crate::state::outbox::BatchPool;
use crate::state::shared::CounterSnapshot;
use crate::state::slab::Slab;
use crate::state::sources::SourceRefusal;
use crate::state::{ClientId, Shared};
use crate::store::history::Record;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use tracing::{debug, info};

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
    /// The NAMES text of big channels, kept between JOINs.
    names: NamesCache,
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
    /// Local clients with user mode `+s` (a non-empty snomask), to whom
    /// [`server_notices`] sends; a closing client leaves it.
    notice_watchers: Vec<ClientId>,
    /// Local counts, published to `shared.counters` by [`Shard::publish_counters`].
    counts: CounterSnapshot,
    /// Proposals this shard has sent to the cluster, numbering them.
    proposals: u64,
    /// Proposals the cluster link could not order (see [`Handoff::Unordered`]).
    unordered: Vec<u64>,
    /// Outcomes of this shard's cluster proposals, by proposal number, until the
    /// waiting proposer takes its own.
    answered: Vec<(u64, crate::state::network::Outcome)>,
    /// Channel messages to store for CHATHISTORY, handed to the store's writer as
    /// one job per scheduler pass ([`Shard::flush_handoffs`]); empty without a store.
    history: Vec<Record>,
    /// Replies built off this shard (CHATHISTORY answers), taken in by [`Shard::pump`].
    deferred: Mailbox,
    /// When shard 0 last had the store expire old history (`None`: not yet).
    history_swept: Option<Instant>,
    /// Local users holding a registered nick without being logged in to its
    /// account, and when their grace period ends (`--nick-grace`); at most one entry
    /// per client, dropped when it is renamed or found logged in.
    nick_deadlines: Vec<(ClientId, Instant)>,
    /// Guest nicks this shard has handed out, numbering the next.
    guests: u64,
    /// The last live upgrade's farewell this shard finished, and whether it has
    /// told its TLS and WebSocket clients of the current one ([`freeze`]).
    farewell_round: u64,
    farewell_said: bool,
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
        let deferred = shared
            .deferred
            .take_receiver(id)
            .expect("each shard is built once, with a mailbox of its own");
        Shard {
            id,
            node: shared.node(),
            handle_line,
            clients: Slab::default(),
            local_members: LocalMembers::of_place(log.network(), id),
            names: NamesCache::default(),
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
            notice_watchers: Vec::new(),
            counts: CounterSnapshot::default(),
            proposals: 0,
            unordered: Vec::new(),
            answered: Vec::new(),
            history: Vec::new(),
            deferred,
            history_swept: None,
            nick_deadlines: Vec::new(),
            guests: 0,
            farewell_round: 0,
            farewell_said: false,
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

    /// The NAMES text of big channels, kept between JOINs.
    pub fn names_cache(&mut self) -> &mut NamesCache {
        &mut self.names
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

    /// A driver admitted connection `id` (through [`Shard::accept`]) and set it up,
    /// on a TLS listener or not: logs it (the audit trail's first line of a
    /// connection) and records whether it is TLS.
    pub fn connected(&mut self, id: ClientId, tls: bool, websocket: bool) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        if tls {
            client.tls = Some(Box::default());
        }
        client.websocket = websocket;
        info!(client = %id, address = %client.host, tls, "connect");
    }

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
            let mask = ban.target.mask();
            let why = format!("{} ({})", ban.target.kind(), ban.reason);
            info!(address = %peer.ip(), ban = %mask, reason = %ban.reason, "ban hit: connection refused");
            self.server_notice(
                NoticeKind::Bans,
                &format!(
                    "Ban hit: connection from {} refused by {why} [{mask}]",
                    peer.ip()
                ),
            );
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
                self.count_source_refusal(refusal);
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

    /// A trusted proxy named the client's real address (a WebSocket upgrade's
    /// `X-Forwarded-For`), before it registered: DLINEs and the per-source limits are
    /// checked again for that address, the client's admission moves to it, and its
    /// host (what WHOIS, bans and other users see) becomes it. On a refusal nothing
    /// changes and the connection is to be closed.
    pub fn readdress(&mut self, id: ClientId, ip: IpAddr, now: Instant) -> Result<(), Refused> {
        let now_unix = crate::proto::time::unix_seconds(std::time::SystemTime::now());
        if let Some(ban) = self.log.network().server_bans().address_ban(ip, now_unix) {
            debug!(%ip, reason = %ban.reason, "D-Lined forwarded address refused");
            self.counts.refused_banned += 1;
            return Err(Refused::Banned);
        }
        let admission = self.shared.sources.admit(ip, now).map_err(|refusal| {
            self.count_source_refusal(refusal);
            Refused::from(refusal)
        })?;
        let Some(client) = live(&mut self.clients, id) else {
            self.shared.sources.release(admission, now);
            return Ok(());
        };
        let proxy = std::mem::replace(&mut client.admission, admission);
        client.host = Client::host_of(ip);
        self.shared.sources.release(proxy, now);
        Ok(())
    }

    fn count_source_refusal(&mut self, refusal: SourceRefusal) {
        match refusal {
            SourceRefusal::TooManyConnections => self.counts.refused_per_source += 1,
            SourceRefusal::TooFast => self.counts.refused_too_fast += 1,
            SourceRefusal::TooManyUnregistered | SourceRefusal::ServerBusy => {
                self.counts.refused_unregistered += 1
            }
        }
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
        debug!(client = %id, %error, "write failed");
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

    // ---- shutdown ------------------------------------------------------------------

    // ---- delivery (handler-facing) -------------------------------------------------

    // ---- input ---------------------------------------------------------------------
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
