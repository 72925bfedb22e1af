//! Server configuration: every limit of PROTOCOL.md with its default.
//!
//! `Config` is plain data built by the CLI (`crate::cli`) or by tests; the server only
//! reads it. Defaults protect a public server; benchmarks turn flood control off.

use crate::state::flood::FloodPolicy;
use crate::tls::TlsFiles;
use std::net::SocketAddr;
use std::time::Duration;

/// Which I/O driver the shards run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll with a warning.
    #[default]
    Auto,
    /// io_uring (tokio-uring); fail if the kernel refuses it.
    Uring,
    /// epoll (tokio).
    Epoll,
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
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (each shard binds every one with SO_REUSEPORT).
    pub listen: Vec<SocketAddr>,
    /// Addresses to listen on with TLS, bound by every shard like `listen`.
    pub tls_listen: Vec<SocketAddr>,
    /// The certificate chain and key the TLS listeners present; needed with
    /// `tls_listen`, re-read on reload.
    pub tls: Option<TlsFiles>,
    /// The STS policy advertised in `CAP LS`; `None` (the default) advertises none.
    pub sts: Option<StsPolicy>,
    /// The server's name, the source of numerics.
    pub server_name: String,
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
    /// Most channels one client may be in (CHANLIMIT).
    pub max_channels_per_client: usize,
    /// Runtimes (threads), one per core.
    pub shards: usize,
    /// The I/O driver.
    pub io: IoMode,
}

impl Config {
    /// The flood policy built from the two flood settings.
    pub fn flood_policy(&self) -> FloodPolicy {
        FloodPolicy {
            burst: self.flood_burst,
            lines_per_second: self.flood_rate,
        }
    }

    /// A config for tests and embedding: loopback, ephemeral port, one shard.
    pub fn loopback() -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            shards: 1,
            ..Config::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 6667))],
            tls_listen: Vec::new(),
            tls: None,
            sts: None,
            server_name: "ringchat.local".to_owned(),
            network: "ringchat".to_owned(),
            password: None,
            motd: None,
            max_clients: default_max_clients(),
            sendq: 1 << 20,
            recvq: 8 << 10,
            flood_burst: 20,
            flood_rate: 5.0,
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(60),
            registration_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
            max_channels_per_client: 50,
            shards: available_cores(),
            io: IoMode::Auto,
        }
    }
}

/// File descriptors kept back from clients: listeners, the rings, log files.
const RESERVED_FDS: u64 = 64;

/// What the open-file limit allows, less a reserve: one descriptor per client.
pub fn default_max_clients() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = if ok { limit.rlim_cur } else { 1024 };
    soft.saturating_sub(RESERVED_FDS).max(1) as usize
}

/// The cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
