//! What the server runs with, as plain values: [`Config`] and the value types it is
//! made of. A leaf: it imports no settings code and no state, so the state can hold a
//! `Config` without a cycle (`tests/module_graph.rs`).
//!
//! `Config` is built from flags, environment and config file by `crate::settings`
//! (which declares each setting, its default and its checks once, and implements
//! `Default` from those defaults) or by tests; the server only reads it. It holds the
//! values the server started with: the MOTD and the limits a reload may change are
//! read from `crate::live` instead. Defaults protect a public server; benchmarks turn
//! flood control off.

use crate::bans::ServerBan;
use crate::opers::OperBlock;
use crate::tls::TlsFiles;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The server name when none is set; a cluster node makes it its own by putting
/// `node<N>.` in front (`node1.ringchat.local`), so WHOIS can say which node a user
/// is on.
pub const DEFAULT_SERVER_NAME: &str = "ringchat.local";

/// How far back a member reads the history of a secret (`+s`) or invite-only
/// (`+i`) channel: such a channel's members expect that someone let in later does
/// not read what was said before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryCutoff {
    /// Everything kept, as in any other channel.
    None,
    /// What was said since the member's last JOIN.
    #[default]
    Join,
    /// What was said since the member's connection signed on.
    Registration,
}

/// Which I/O driver the shards run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// The fastest driver the kernel allows: ring, then uring, then epoll, logging
    /// each fallback with its reason.
    #[default]
    Auto,
    /// io_uring (tokio-uring); fail if the kernel refuses it.
    Uring,
    /// epoll (tokio).
    Epoll,
    /// ringchat's own io_uring completion loop (multishot accept and receive into a
    /// provided-buffer ring); fail if the kernel lacks what it needs.
    Ring,
}

impl IoMode {
    /// The driver's name as `--io` spells it (`ring`), for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Uring => "uring",
            IoMode::Epoll => "epoll",
            IoMode::Ring => "ring",
        }
    }
}

/// [`IoMode::name`].
impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A value the settings' checks refuse (`crate::settings::checks`): which setting, and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {problem}")]
pub struct InvalidSetting {
    /// The setting's config-file key; its flag is `--` and the same name.
    pub key: &'static str,
    /// What is wrong, as the end of a sentence ("must be at least 1").
    pub problem: String,
}

/// IRCv3 Strict Transport Security: plaintext clients that understand `sts` are told
/// to reconnect with TLS, and TLS clients to keep doing so for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StsPolicy {
    /// The TLS port plaintext clients are sent to (`sts=port=`).
    pub port: u16,
    /// How long a client remembers to use TLS (`sts=duration=`, whole seconds).
    pub duration: Duration,
}

/// Everything the server needs to know at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Run as one node of a cluster (`--cluster`); `None`: alone.
    pub cluster: Option<ClusterConfig>,
    /// Addresses to listen on (each shard binds every one with SO_REUSEPORT).
    pub listen: Vec<SocketAddr>,
    /// Addresses to listen on with TLS, bound by every shard like `listen`.
    pub tls_listen: Vec<SocketAddr>,
    /// The certificate chain and key the TLS listeners present; needed with
    /// `tls_listen`, re-read on reload.
    pub tls: Option<TlsFiles>,
    /// Addresses serving IRC over WebSocket and the web client, plain HTTP.
    pub websocket_listen: Vec<SocketAddr>,
    /// Addresses serving the same over TLS, with the certificate of `tls`.
    pub websocket_tls_listen: Vec<SocketAddr>,
    /// Origins (the `Origin` header) allowed to open a WebSocket; empty: any.
    pub websocket_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` names the client on a WebSocket
    /// listener.
    pub websocket_proxies: Vec<IpNet>,
    /// Web gateways allowed to send WEBIRC (`--webirc`), each with its password;
    /// empty: WEBIRC is refused from everyone.
    pub webirc: Vec<WebircGateway>,
    /// The STS policy advertised in `CAP LS`; `None` (the default) advertises none.
    pub sts: Option<StsPolicy>,
    /// The server's name, the source of numerics.
    pub server_name: String,
    /// The server's description in WHOIS (312) and LINKS (364).
    pub server_info: String,
    /// The network name in 001 and ISUPPORT.
    pub network: String,
    /// Connection password (PASS), if any.
    pub password: Option<String>,
    /// MOTD lines; `None` answers 422.
    pub motd: Option<Vec<String>>,
    /// Most simultaneous connections, registered or not.
    pub max_clients: usize,
    /// Most bytes queued for one client before it is disconnected (`SendQ exceeded`).
    pub sendq: usize,
    /// Most bytes of unprocessed input held for one client (`Excess Flood`).
    pub recvq: usize,
    /// Lines a client may send at once.
    pub flood_burst: u32,
    /// Lines per second after the burst; 0 turns flood control off.
    pub flood_rate: f64,
    /// Quiet time after which the server sends PING.
    pub ping_interval: Duration,
    /// Time after that PING without input before the client is dropped.
    pub ping_timeout: Duration,
    /// Time an unregistered connection may take to register.
    pub registration_timeout: Duration,
    /// Longest a graceful shutdown waits for queued output to flush.
    pub shutdown_timeout: Duration,
    /// Longest queued output may make no progress (the peer stopped reading) before
    /// the connection is closed and reset, live or already closing.
    pub write_timeout: Duration,
    /// How long a user may hold a registered nick without logging in to its account
    /// before it is renamed; zero refuses such a nick at once.
    pub nick_grace: Duration,
    /// Shortest password an account may have.
    pub min_password_len: usize,
    /// Per-source connection limits and their exemptions.
    pub sources: SourceLimits,
    /// Most channels one client may be in (CHANLIMIT).
    pub max_channels_per_client: usize,
    /// Lines that are not valid UTF-8 are refused (ISUPPORT `UTF8ONLY`).
    pub utf8_only: bool,
    /// Others see a cloak of each user's address, never the address
    /// ([`crate::cloak`]); off only with `--show-addresses` (and in
    /// [`Config::loopback`], whose tests expect `127.0.0.1`).
    pub cloak_hosts: bool,
    /// The key of the cloaks; `None`: the data directory's key file (generated once).
    pub cloak_secret: Option<String>,
    /// Runtimes (threads), one per core.
    pub shards: usize,
    /// The I/O driver.
    pub io: IoMode,
    /// Receive buffers in each shard's provided-buffer ring (`--io ring` only; a
    /// power of two). Not a setting: tests shrink it to exhaust the ring on purpose.
    pub ring_buffers: u16,
    /// Operator accounts (`[[oper]]` blocks); a reload replaces them.
    pub opers: Vec<OperBlock>,
    /// Where KLINEs and DLINEs are kept across restarts (`bans.toml` in the data
    /// directory); `None`: only while the process runs.
    pub ban_file: Option<PathBuf>,
    /// The server's state directory (absolute; the start creates it if missing),
    /// where the bans and the embedded store (accounts, history) live. `None` only
    /// for the defaults in code, which persist nothing.
    pub data_dir: Option<PathBuf>,
    /// The bans the server starts with, read from `ban_file`.
    pub server_bans: Vec<ServerBan>,
    /// Most of the connected users, in percent, one KLINE or DLINE may hit without
    /// `FORCE`.
    pub max_ban_share: u8,
    /// Messages and events kept per channel or direct conversation for CHATHISTORY
    /// (with a data directory).
    pub history_max_messages: u64,
    /// How long a channel message is kept for CHATHISTORY.
    pub history_max_age: Duration,
    /// How far back a member reads a secret (`+s`) or invite-only (`+i`) channel's
    /// history.
    pub history_private_cutoff: HistoryCutoff,
    /// What ADMIN answers.
    pub admin: AdminInfo,
}

impl Config {
    /// A config for tests and embedding: loopback, ephemeral port, one shard, the
    /// real addresses shown (every user is `127.0.0.1`, and tests say so).
    pub fn loopback() -> Config {
        Config {
            cluster: None,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            shards: 1,
            cloak_hosts: false,
            ..Config::default()
        }
    }
}

/// A web gateway trusted to name the users behind it (IRCv3 WebIRC): a connection
/// from `network` that sends WEBIRC with `password` takes the address it names.
#[derive(Clone, PartialEq, Eq)]
pub struct WebircGateway {
    /// Where the gateway connects from.
    pub network: IpNet,
    /// What its WEBIRC must carry, compared in constant time.
    pub password: String,
}

/// Never shows the password (a `Config` is logged in debug output).
impl std::fmt::Debug for WebircGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebircGateway")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// The server's administrative contacts (ADMIN); each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminInfo {
    /// Where the server is (257 RPL_ADMINLOC1).
    pub location: Option<String>,
    /// Who runs it (258 RPL_ADMINLOC2).
    pub name: Option<String>,
    /// How to reach them (259 RPL_ADMINEMAIL).
    pub email: Option<String>,
}

/// Per-source connection limits (`crate::state::sources` enforces them).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLimits {
    /// Most connections open at once from one source.
    pub max_connections: u32,
    /// Connections one source may open at once after being quiet.
    pub connect_burst: u32,
    /// Connections per second one source may open after the burst.
    pub connect_rate: f64,
    /// Most unregistered connections from one source.
    pub max_unregistered: u32,
    /// Most unregistered connections from all sources together.
    pub max_unregistered_total: usize,
    /// Networks exempt from the per-source limits.
    pub exempt: Vec<IpNet>,
    /// Prefix length that makes one IPv6 source.
    pub ipv6_prefix: u8,
}

/// How fast a client may send lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodPolicy {
    /// Lines a client may send at once after being quiet.
    pub burst: u32,
    /// Lines per second after the burst; 0 turns flood control off.
    pub lines_per_second: f64,
}

impl FloodPolicy {
    /// Whether the policy limits anything at all.
    pub fn enabled(&self) -> bool {
        self.lines_per_second > 0.0
    }
}

/// How this node joins a cluster; see `crate::cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`).
    pub servers: Vec<String>,
    /// This node's number, unique in the cluster. With `pick_node_id`, the number the
    /// node was given when it joined (0 until then).
    pub node: u16,
    /// `--node-id` was not given: at start the node takes the lowest number that no
    /// live node holds ([`crate::cluster::lease`]) and sets `node` to it.
    pub pick_node_id: bool,
    /// A NATS `.creds` file, if the servers require one.
    pub credentials: Option<PathBuf>,
    /// CA certificates for TLS to NATS; TLS is required when set.
    pub ca: Option<PathBuf>,
    /// Silence after which another node is declared lost.
    pub node_timeout: Duration,
    /// Events between two snapshots.
    pub snapshot_every: u64,
}

/// Receive buffers per shard under `--io ring`: 256 × 4 KiB = 1 MiB, shared by all
/// of the shard's connections (a buffer is held only while its data is handled).
pub const DEFAULT_RING_BUFFERS: u16 = 256;

/// File descriptors kept back from clients: listeners, the rings, log files.
pub const RESERVED_FDS: u64 = 64;

/// What the open-file limit allows, less a reserve: one descriptor per client.
pub fn default_max_clients() -> usize {
    open_file_limit().saturating_sub(RESERVED_FDS).max(1) as usize
}

/// The soft open-file limit (1024 if it cannot be read).
pub fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok {
        limit.rlim_cur
    } else {
        1024
    }
}

/// The cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
