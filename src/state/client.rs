//! One connection's shard-local state: everything the message path needs about a
//! client, in one compact struct (docs/architecture.md invariant 9).

use super::flood::TokenBucket;
use super::network::Activity;
use super::outbox::Outbox;
use super::slab::SlotKey;
use crate::proto::caps::Caps;
use crate::proto::framing::Framer;
use crate::proto::time::unix_seconds;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Names a client anywhere in the network: its node, its shard there and its slot
/// in that shard. Carried in events, so it has a wire form
/// ([`crate::state::network::wire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ClientId {
    /// The node (server process) of a cluster the connection lives on; 0 when alone.
    pub node: u16,
    /// The shard the connection lives on for its whole life.
    pub shard: u16,
    /// The slot in that shard's client slab; stale once the client is gone.
    pub slot: SlotKey,
}

impl ClientId {
    /// The id as one number, ordered as its fields are (node, shard, slot index,
    /// generation): the network state's ordered maps compare ids on every lookup, and
    /// one integer comparison is a few instructions where four field comparisons
    /// branch four times.
    fn ordinal(self) -> u128 {
        (u128::from(self.node) << 80)
            | (u128::from(self.shard) << 64)
            | (u128::from(self.slot.index) << 32)
            | u128::from(self.slot.generation)
    }
}

/// `node.shard.slot` (`0.1.42`), how logs name a connection: short, and the same
/// in every line about it while it lives.
impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.node, self.shard, self.slot.index)
    }
}

impl Ord for ClientId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ordinal().cmp(&other.ordinal())
    }
}

impl PartialOrd for ClientId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What a client has said during registration, dropped once it is registered.
#[derive(Debug, Default)]
pub struct Registration {
    /// The nickname reserved for it in the directory.
    pub nick: Option<String>,
    /// USER's user name (sanitized) and real name.
    pub user: Option<(String, String)>,
    /// PASS matched the server password (or none is configured).
    pub password_ok: bool,
    /// `CAP LS`/`CAP REQ` was seen and `CAP END` not yet: registration waits.
    pub negotiating_caps: bool,
    /// A trusted web gateway's WEBIRC named the user behind this connection (the
    /// address was taken then); at most one per connection.
    pub gateway: Option<GatewayUser>,
}

/// What a WEBIRC gateway said of its user beyond the address, used when the user
/// registers.
#[derive(Debug)]
pub struct GatewayUser {
    /// The user's host name, if the gateway gave a valid one: shown instead of the
    /// address when hosts are not cloaked.
    pub hostname: Option<Box<str>>,
    /// The user reaches the gateway over TLS and the gateway reaches the server over
    /// TLS (the spec's `secure`): 671 in WHOIS.
    pub secure: bool,
}

/// Why a connection is going away, for the QUIT others see and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent QUIT with this message.
    Quit(String),
    /// The peer closed or reset the connection.
    ConnectionClosed,
    /// The server decided: ping timeout, excess flood, sendq, shutdown, bad password.
    Server(&'static str),
    /// A server operator disconnected it: `Killed (oper (reason))`.
    Killed(String),
}

/// MARKREAD positions kept by a connection not logged in: (target, Unix ms), the
/// most recently set last.
pub type SessionMarkers = Vec<(Box<str>, u64)>;

/// One connection; owned by its shard's client slab.
#[derive(Debug)]
pub struct Client {
    /// This client's id; stable for the connection's life.
    pub id: ClientId,
    /// The peer's IP as text (no reverse DNS, so nothing blocks on lookups). Others
    /// see a cloak of it once the client is registered (the host in `source`).
    pub host: Box<str>,
    /// `Some` until registration completes.
    pub registration: Option<Box<Registration>>,
    /// `nick!~user@host` once registered; the nickname is its first `nick_len` bytes.
    source: Box<str>,
    nick_len: usize,
    /// IRCv3 capabilities the client enabled.
    pub caps: Caps,
    /// Lines waiting to be written to this client.
    pub outbox: Outbox,
    /// Input not yet processed: the start of a line, or lines waiting for flood tokens.
    /// Bounded by the recvq (flood) and the framer (one maximal line).
    pub input: Vec<u8>,
    /// Line splitting state for this connection's input.
    pub framer: Framer,
    /// Flood control budget.
    pub flood: TokenBucket,
    /// Lines are waiting in `input` for flood tokens.
    pub throttled: bool,
    /// When the client last sent anything (liveness).
    pub last_input: Instant,
    /// Signon and last-activity times (WHOIS idle), shared with every replica's
    /// [`User`](super::network::User) so any shard can read them without asking this
    /// one.
    pub activity: Arc<Activity>,
    /// When the connection was accepted.
    pub connected_at: Instant,
    /// The server has sent a liveness PING that is not yet answered.
    pub ping_sent: bool,
    /// Which source this connection counts against, and whether it still counts as
    /// unregistered ([`Sources`](super::sources::Sources)).
    pub admission: super::sources::Admission,
    /// The socket's descriptor, an opaque handle the driver sets at accept and uses
    /// to reset a stalled connection; `None` once handed out for that.
    pub socket: Option<std::os::fd::RawFd>,
    /// Since when output has been queued without the writer making progress (the
    /// peer stopped reading); `None` while output flows or nothing is queued.
    pub stalled_since: Option<Instant>,
    /// The connection is closing: no more input is processed or output queued beyond
    /// the final ERROR; the writer flushes, shuts the socket and frees the slot.
    pub closing: bool,
    /// Fan-out stamp: set to the shard's current stamp when a line was queued, so a
    /// client sharing several channels with a quitter gets the QUIT once.
    pub delivery_stamp: u32,
    /// Nicknames on this client's MONITOR list, as given; at most
    /// [`MONITOR_LIMIT`](crate::shard::monitor::MONITOR_LIMIT). The shard's index of
    /// watchers mirrors it and is cleared from it when the client closes.
    pub monitoring: Vec<crate::proto::CaselessKey>,
    /// User mode `+B`, mirrored from the network state when the client's own MODE
    /// is applied, so the message path tags its messages `bot` without a lookup.
    pub bot: bool,
    /// User mode `+s`: the server notices this operator receives (empty: `-s`).
    /// Shard-local, like the notices, which each shard renders for its own clients;
    /// the shard's watcher list mirrors it.
    pub snomask: crate::proto::snomask::Snomask,
    /// The account the client is logged in to, mirrored from the network state when
    /// its own login is applied, so the message path tags its messages `account=`
    /// without a lookup.
    pub account: Option<crate::proto::CaselessKey>,
    /// SASL, IDENTIFY and REGISTER in progress and their failures; `None` until the
    /// client first authenticates, so others pay one pointer.
    pub auth: Option<Box<Authentication>>,
    /// MARKREAD positions of a client not logged in (target, Unix ms): this
    /// connection's own, gone when it closes; `None` until its first set.
    pub session_markers: Option<Box<SessionMarkers>>,
    /// Since when the answer to one of its commands is being built off the shard
    /// (CHATHISTORY): its next lines wait for it, so answers keep the order of the
    /// commands (a PING after CHATHISTORY gets its PONG after the batch).
    pub awaiting_reply: Option<Instant>,
    /// Failed OPER attempts on this connection; the command disconnects the client
    /// when it reaches its limit, so passwords cannot be guessed at line rate.
    pub oper_failures: u8,
    /// `Some` for a connection that came in on a TLS listener (set by the driver at
    /// accept); boxed so a plaintext client pays one pointer for it.
    pub tls: Option<Box<TlsPeer>>,
    /// The connection came in on a WebSocket listener (set by the driver at accept).
    pub websocket: bool,
    /// When this connection last sent a KNOCK that was delivered (one per
    /// `KNOCK_DELAY`).
    pub last_knock: Option<Instant>,
    /// When it last joined each channel it is in (Unix ms), for the read cutoff of
    /// a `+s`/`+i` channel's history; kept only where history is, `None` until the
    /// first JOIN, so others pay one pointer.
    pub joined_at: Option<Box<JoinTimes>>,
}

/// See [`Client::joined_at`]: (channel, Unix ms), one entry per channel the client
/// is in (at most CHANLIMIT).
pub type JoinTimes = Vec<(crate::proto::CaselessKey, u64)>;

/// A client's authentication state (see [`Client::auth`]).
#[derive(Debug, Default)]
pub struct Authentication {
    /// `Some` while a SASL exchange is open: its mechanism and the base64 received
    /// so far, at most a few 400-byte chunks (the command bounds it).
    pub sasl: Option<SaslExchange>,
    /// A password is with the workers: one attempt in flight per client, so a
    /// client cannot queue many argon2 runs.
    pub in_flight: bool,
    /// Failed logins on this connection; the command closes it at its limit.
    pub failures: u8,
    /// Logged in before registration completed: the login is applied to the network
    /// once the client is a user.
    pub pending_account: Option<Box<str>>,
}

/// An open SASL exchange (see [`Authentication::sasl`]).
#[derive(Debug)]
pub struct SaslExchange {
    /// The mechanism the client chose.
    pub mechanism: SaslMechanism,
    /// The base64 received so far (of the current message).
    pub received: Vec<u8>,
    /// SCRAM-SHA-256 only: how far the exchange has gone (`None`: the client-first
    /// message is awaited).
    pub scram: Option<ScramStep>,
}

/// A SCRAM-SHA-256 exchange past the client-first message.
#[derive(Debug)]
pub enum ScramStep {
    /// The server-first message was sent; the client-final one is awaited.
    Challenged(Box<crate::scram::Challenge>),
    /// The proof was right and the server-final message sent; the client's empty
    /// response is awaited, then it is logged in to `account`.
    Verified {
        /// The account, as the client named it.
        account: Box<str>,
    },
}

/// The SASL mechanisms the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// RFC 4616: account and password.
    Plain,
    /// RFC 4422 appendix A: the TLS client certificate (its fingerprint).
    External,
    /// RFC 5802 and 7677: a proof of the password against stored keys.
    ScramSha256,
}

/// What a TLS connection's handshake told the server about the client.
#[derive(Debug, Default)]
pub struct TlsPeer {
    /// SHA-256 of the client certificate, lowercase hex, if the client presented one;
    /// set by the driver when the handshake completes, before any input is processed.
    pub certfp: Option<Box<str>>,
}

impl Client {
    /// The host shown for an address: its text (no reverse DNS, so nothing blocks on
    /// lookups).
    pub fn host_of(ip: IpAddr) -> Box<str> {
        match ip {
            // A host starting with ':' would break the line format.
            IpAddr::V6(v6) if v6.to_string().starts_with(':') => format!("0{v6}").into(),
            IpAddr::V6(v6) => v6.to_string().into(),
            IpAddr::V4(v4) => v4.to_string().into(),
        }
    }

    /// A freshly accepted, unregistered connection.
    pub fn new(
        id: ClientId,
        ip: IpAddr,
        admission: super::sources::Admission,
        flood: TokenBucket,
        now: Instant,
    ) -> Client {
        Client {
            id,
            host: Client::host_of(ip),
            registration: Some(Box::default()),
            source: "*".into(),
            nick_len: 1,
            caps: Caps::NONE,
            outbox: Outbox::default(),
            input: Vec::new(),
            framer: Framer::default(),
            flood,
            throttled: false,
            last_input: now,
            activity: Arc::new(Activity::new(now, unix_seconds(SystemTime::now()))),
            connected_at: now,
            ping_sent: false,
            admission,
            socket: None,
            stalled_since: None,
            closing: false,
            delivery_stamp: 0,
            monitoring: Vec::new(),
            bot: false,
            snomask: Default::default(),
            account: None,
            auth: None,
            session_markers: None,
            awaiting_reply: None,
            oper_failures: 0,
            tls: None,
            websocket: false,
            last_knock: None,
            joined_at: None,
        }
    }

    /// Whether a live upgrade can hand this connection to the new process: not a
    /// TLS or WebSocket one, whose session state lives in this process only.
    pub fn crosses_an_upgrade(&self) -> bool {
        self.tls.is_none() && !self.websocket
    }

    /// Whether registration has completed.
    pub fn is_registered(&self) -> bool {
        self.registration.is_none()
    }

    /// The nickname, `*` before one is set (the target of early numerics).
    pub fn nick(&self) -> &str {
        match &self.registration {
            Some(registration) => registration.nick.as_deref().unwrap_or("*"),
            None => &self.source[..self.nick_len],
        }
    }

    /// `nick!~user@host`, the source of lines this client causes.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `~user` part of the source.
    pub fn user(&self) -> &str {
        let after_nick = &self.source[self.nick_len + 1..];
        after_nick.split('@').next().unwrap_or(after_nick)
    }

    /// Sets the source from a new nickname, the user name and the host others see
    /// (the cloak, or the address when cloaking is off).
    pub fn set_identity(&mut self, nick: &str, user: &str, shown_host: &str) {
        self.source = format!("{nick}!~{user}@{shown_host}").into();
        self.nick_len = nick.len();
    }

    /// The host others see: the part of the source after `@` (the address before
    /// registration).
    pub fn shown_host(&self) -> &str {
        match self.source.rsplit_once('@') {
            Some((_, host)) if self.is_registered() => host,
            _ => &self.host,
        }
    }

    /// The source and the length of its nick part, for a live upgrade's handover.
    pub(crate) fn source_parts(&self) -> (&str, usize) {
        (&self.source, self.nick_len)
    }

    /// Sets what [`Client::source_parts`] gave.
    pub(crate) fn set_source_parts(&mut self, source: Box<str>, nick_len: usize) {
        self.source = source;
        self.nick_len = nick_len.min(self.source.len());
    }

    /// Changes only the nickname part of the source.
    pub fn rename(&mut self, nick: &str) {
        let user = self.user().trim_start_matches('~').to_owned();
        let shown_host = self.shown_host().to_owned();
        self.set_identity(nick, &user, &shown_host);
    }
}
