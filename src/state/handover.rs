//! What crosses from the old process to the new one: every shard's clients as plain
//! data (no `Instant`s, which mean nothing in another process: ages instead), the
//! network replica as its snapshot, and which descriptor belongs to what. Written
//! with postcard behind a format number ([`FORMAT`]): a new binary that reads an
//! older or newer format refuses before the old one lets go of anything.

use crate::proto::caps::Caps;
use crate::proto::snomask::Snomask;
use crate::proto::CaselessKey;
use crate::state::client::{Authentication, Client, GatewayUser, Registration};
use crate::state::flood::TokenBucket;
use crate::state::network::Activity;
use crate::state::sources::Admission;
use crate::state::ClientId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The handover format this binary writes and reads. Bumped whenever a record
/// changes shape; both sides compare it before anything is frozen.
pub const FORMAT: u32 = 2;

/// Everything the new process needs to go on where the old one stopped.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// [`FORMAT`] of the writer (checked again on read, after the hello).
    pub format: u32,
    /// The old binary's version, for the log.
    pub from_version: String,
    /// The node's network replica after the last entry every shard took in
    /// ([`crate::state::network::Network::snapshot`]).
    pub network: Vec<u8>,
    /// One capture per shard, in shard order.
    pub shards: Vec<ShardCapture>,
    /// The operator who asked (`UPGRADE`), told by the new process how it went.
    pub asked_by: Option<ClientId>,
    /// Descriptors that follow the message, in this order: each shard's listeners,
    /// then its clients.
    pub descriptors: usize,
    /// A cluster node's link, where it stopped; `None` alone.
    pub link: Option<LinkCapture>,
}

/// A cluster node's link, stopped for an upgrade: the new process goes on as the
/// same run of the node (same lease, same message numbering), so other nodes see
/// nothing change. Taken once the link has published everything its shards sent
/// and has no proposal, event or message waiting, so these few numbers are all of
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCapture {
    /// The node's number.
    pub node: u16,
    /// The run (its lease and every message it numbered name it).
    pub run: u64,
    /// The last stream entry appended (the network snapshot's position).
    pub appended: u64,
    /// Messages published to each node, by node number.
    pub sent_to: Vec<u64>,
    /// Per node: the run heard from last and how many of its messages arrived.
    pub arrived: Vec<(u64, u64)>,
    /// Messages from other nodes found missing so far.
    pub lost: u64,
}

/// One shard, frozen.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ShardCapture {
    /// The shard's listening sockets (their descriptors follow the message).
    pub listeners: Vec<ListenerKind>,
    /// Its clients, each with its socket (descriptors follow, in this order).
    pub clients: Vec<ClientRecord>,
    /// Guest nicks handed out so far (their numbers must not repeat).
    pub guests: u64,
    /// Registered nicks held without the account, and the grace left (ms).
    pub nick_deadlines: Vec<(ClientId, u64)>,
    /// The descriptors, in the order above; sent beside the message, not in it.
    #[serde(skip)]
    pub descriptors: Vec<std::os::fd::RawFd>,
}

/// What a listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerKind {
    /// IRC in plaintext.
    Plain,
    /// IRC in TLS.
    Tls,
    /// IRC over WebSocket.
    WebSocket,
    /// IRC over WebSocket in TLS.
    WebSocketTls,
}

impl ListenerKind {
    /// The kind of a listener with these layers.
    pub fn of(tls: bool, websocket: bool) -> ListenerKind {
        match (tls, websocket) {
            (false, false) => ListenerKind::Plain,
            (true, false) => ListenerKind::Tls,
            (false, true) => ListenerKind::WebSocket,
            (true, true) => ListenerKind::WebSocketTls,
        }
    }
}

/// One plaintext client, with its queued output and unprocessed input.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: ClientId,
    pub host: Box<str>,
    pub registration: Option<RegistrationRecord>,
    pub source: Box<str>,
    pub nick_len: usize,
    pub caps: u32,
    /// Output not yet written, in order (a partly written line's tail first).
    pub output: Vec<Bytes>,
    /// Input not yet processed: a partial line, or lines waiting for flood tokens.
    pub input: Vec<u8>,
    /// The framer was throwing away the rest of an overlong line.
    pub discarding: bool,
    pub flood_tokens: f32,
    pub throttled: bool,
    pub since_input_ms: u64,
    pub connected_ms: u64,
    pub signon_unix: u64,
    pub idle_ms: u64,
    pub ping_sent: bool,
    pub source_key: Option<IpAddr>,
    pub counts_unregistered: bool,
    pub monitoring: Vec<String>,
    pub bot: bool,
    pub snomask: u8,
    pub account: Option<String>,
    /// A SASL exchange was open: it is aborted (906) on the other side.
    pub sasl_open: bool,
    pub auth_failures: u8,
    pub pending_account: Option<Box<str>>,
    pub session_markers: Option<Vec<(Box<str>, u64)>>,
    pub oper_failures: u8,
    pub since_knock_ms: Option<u64>,
    pub joined_at: Option<Vec<(String, u64)>>,
}

/// What a client still registering has said.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub nick: Option<String>,
    pub user: Option<(String, String)>,
    pub password_ok: bool,
    pub negotiating_caps: bool,
    pub gateway: Option<(Option<Box<str>>, bool)>,
}

fn age_ms(then: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(then).as_millis()).unwrap_or(u64::MAX)
}

fn before(now: Instant, ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
}

impl ClientRecord {
    /// The record of `client` as of `now`. The caller has made sure nothing is in
    /// flight for it (no write, no offloaded reply), so its outbox holds every byte
    /// it is owed.
    pub fn capture(client: &Client, now: Instant) -> ClientRecord {
        let (source, nick_len) = client.source_parts();
        let auth = client.auth.as_deref();
        ClientRecord {
            id: client.id,
            host: client.host.clone(),
            registration: client.registration.as_deref().map(|r| RegistrationRecord {
                nick: r.nick.clone(),
                user: r.user.clone(),
                password_ok: r.password_ok,
                negotiating_caps: r.negotiating_caps,
                gateway: r.gateway.as_ref().map(|g| (g.hostname.clone(), g.secure)),
            }),
            source: source.into(),
            nick_len,
            caps: client.caps.bits(),
            output: client.outbox.queued().cloned().collect(),
            input: client.input.clone(),
            discarding: client.framer.is_discarding(),
            flood_tokens: client.flood.tokens(),
            throttled: client.throttled,
            since_input_ms: age_ms(client.last_input, now),
            connected_ms: age_ms(client.connected_at, now),
            signon_unix: client.activity.signon(),
            idle_ms: client.activity.idle_secs(now).saturating_mul(1000),
            ping_sent: client.ping_sent,
            source_key: client.admission.source,
            counts_unregistered: client.admission.unregistered,
            monitoring: client
                .monitoring
                .iter()
                .map(|nick| nick.as_str().to_owned())
                .collect(),
            bot: client.bot,
            snomask: client.snomask.bits(),
            account: client.account.as_ref().map(|a| a.as_str().to_owned()),
            sasl_open: auth.is_some_and(|a| a.sasl.is_some()),
            auth_failures: auth.map_or(0, |a| a.failures),
            pending_account: auth.and_then(|a| a.pending_account.clone()),
            session_markers: client.session_markers.as_deref().cloned(),
            oper_failures: client.oper_failures,
            since_knock_ms: client.last_knock.map(|at| age_ms(at, now)),
            joined_at: client.joined_at.as_deref().map(|times| {
                times
                    .iter()
                    .map(|(channel, at)| (channel.as_str().to_owned(), *at))
                    .collect()
            }),
        }
    }

    /// The client again, as of `now` in this process. Its activity clock is the one
    /// the network replica's user must share ([`Client::activity`]).
    pub fn restore(self, now: Instant, flood: TokenBucket) -> Client {
        let activity = Arc::new(Activity::resumed(
            before(now, self.connected_ms),
            self.signon_unix,
            self.connected_ms.saturating_sub(self.idle_ms),
        ));
        let mut client = Client::new(
            self.id,
            IpAddr::from([0, 0, 0, 0]),
            Admission {
                source: self.source_key,
                unregistered: self.counts_unregistered,
            },
            flood.with_tokens(self.flood_tokens),
            now,
        );
        client.host = self.host;
        client.registration = self.registration.map(|r| {
            Box::new(Registration {
                nick: r.nick,
                user: r.user,
                password_ok: r.password_ok,
                negotiating_caps: r.negotiating_caps,
                gateway: r
                    .gateway
                    .map(|(hostname, secure)| GatewayUser { hostname, secure }),
            })
        });
        client.set_source_parts(self.source, self.nick_len);
        client.caps = Caps::from_bits(self.caps);
        client.outbox.restore(self.output);
        client.input = self.input;
        client.framer.set_discarding(self.discarding);
        client.throttled = self.throttled;
        client.last_input = before(now, self.since_input_ms);
        client.activity = activity;
        client.connected_at = before(now, self.connected_ms);
        client.ping_sent = self.ping_sent;
        client.monitoring = self
            .monitoring
            .iter()
            .map(|n| CaselessKey::new(n))
            .collect();
        client.bot = self.bot;
        client.snomask = Snomask::from_bits(self.snomask);
        client.account = self.account.as_deref().map(CaselessKey::new);
        if self.auth_failures > 0 || self.pending_account.is_some() {
            client.auth = Some(Box::new(Authentication {
                failures: self.auth_failures,
                pending_account: self.pending_account,
                ..Authentication::default()
            }));
        }
        client.session_markers = self.session_markers.map(Box::new);
        client.oper_failures = self.oper_failures;
        client.last_knock = self.since_knock_ms.map(|ms| before(now, ms));
        client.joined_at = self.joined_at.map(|times| {
            Box::new(
                times
                    .iter()
                    .map(|(channel, at)| (CaselessKey::new(channel), *at))
                    .collect(),
            )
        });
        client
    }
}
