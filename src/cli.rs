//! The command line: every flag, its default, and its `RINGCHAT_*` variable.

use crate::config::IoMode;
use crate::logging::LogFormat;
use clap::Parser;
use std::path::PathBuf;

/// ringchat: a multi-client IRC chat server on io_uring.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Read settings from this TOML file; flags and environment override it.
    #[arg(long, env = "RINGCHAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check a configuration file as a start would, say whether it is valid, and exit.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
    /// Read a password from stdin (one line), print its argon2 hash for an `[[oper]]`
    /// block's `password`, and exit.
    #[arg(long)]
    pub hash_password: bool,
    /// Address to listen on (repeat for several; IPv4, IPv6 as [::]:6667, or a host
    /// name, which listens on every address it resolves to at start).
    #[arg(
        long,
        env = "RINGCHAT_LISTEN",
        default_value = "0.0.0.0:6667",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Address to listen on with TLS (repeat for several), e.g. 0.0.0.0:6697; needs
    /// --tls-cert and --tls-key.
    #[arg(long, env = "RINGCHAT_TLS_LISTEN", value_delimiter = ',')]
    pub tls_listen: Vec<String>,
    /// TLS certificate chain, PEM, leaf first (re-read on SIGHUP).
    #[arg(long, env = "RINGCHAT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (re-read on SIGHUP).
    #[arg(long, env = "RINGCHAT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Advertise IRCv3 STS: send plaintext clients to this TLS port [default: off].
    #[arg(long, env = "RINGCHAT_STS_PORT")]
    pub sts_port: Option<u16>,
    /// Seconds an STS client keeps to TLS after seeing the policy (with --sts-port).
    #[arg(long, env = "RINGCHAT_STS_DURATION", default_value_t = 86_400)]
    pub sts_duration: u64,
    /// Server name shown as the source of server replies.
    #[arg(long, env = "RINGCHAT_SERVER_NAME", default_value = "ringchat.local")]
    pub server_name: String,
    /// Server description shown by WHOIS (312) and LINKS (364).
    #[arg(
        long,
        env = "RINGCHAT_SERVER_INFO",
        default_value = "ringchat IRC server"
    )]
    pub server_info: String,
    /// Network name (001 and ISUPPORT NETWORK=).
    #[arg(long, env = "RINGCHAT_NETWORK", default_value = "ringchat")]
    pub network: String,
    /// Require this connection password (PASS) from every client.
    #[arg(long, env = "RINGCHAT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// File whose lines form the message of the day.
    #[arg(long, env = "RINGCHAT_MOTD")]
    pub motd: Option<PathBuf>,
    /// Most simultaneous connections [default: open-file limit less 64].
    #[arg(long, env = "RINGCHAT_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Bytes queued for one client before it is disconnected ("SendQ exceeded").
    #[arg(long, env = "RINGCHAT_SENDQ", default_value_t = 1 << 20)]
    pub sendq: usize,
    /// Bytes of unprocessed input held for one client before "Excess Flood".
    #[arg(long, env = "RINGCHAT_RECVQ", default_value_t = 8 << 10)]
    pub recvq: usize,
    /// Lines a client may send at once before flood control delays it.
    #[arg(long, env = "RINGCHAT_FLOOD_BURST", default_value_t = 20)]
    pub flood_burst: u32,
    /// Lines per second a client may send after the burst; 0 turns flood control off.
    #[arg(long, env = "RINGCHAT_FLOOD_RATE", default_value_t = 5.0)]
    pub flood_rate: f64,
    /// Seconds of silence before the server sends PING.
    #[arg(long, env = "RINGCHAT_PING_INTERVAL", default_value_t = 120)]
    pub ping_interval: u64,
    /// Seconds after that PING before a silent client is dropped.
    #[arg(long, env = "RINGCHAT_PING_TIMEOUT", default_value_t = 60)]
    pub ping_timeout: u64,
    /// Seconds a new connection has to complete registration.
    #[arg(long, env = "RINGCHAT_REGISTRATION_TIMEOUT", default_value_t = 60)]
    pub registration_timeout: u64,
    /// Seconds a graceful shutdown waits for queued output to flush.
    #[arg(long, env = "RINGCHAT_SHUTDOWN_TIMEOUT", default_value_t = 5)]
    pub shutdown_timeout: u64,
    /// Seconds queued output may make no progress (the peer stopped reading) before
    /// the connection is closed and reset.
    #[arg(long, env = "RINGCHAT_WRITE_TIMEOUT", default_value_t = 30)]
    pub write_timeout: u64,
    /// Most connections open at once from one source (an IPv4 address or an IPv6
    /// prefix).
    #[arg(long, env = "RINGCHAT_MAX_PER_SOURCE", default_value_t = 16)]
    pub max_per_source: u32,
    /// Connections one source may open at once before its connect rate applies.
    #[arg(long, env = "RINGCHAT_SOURCE_CONNECT_BURST", default_value_t = 16)]
    pub source_connect_burst: u32,
    /// Connections per second one source may open after the burst.
    #[arg(long, env = "RINGCHAT_SOURCE_CONNECT_RATE", default_value_t = 0.5)]
    pub source_connect_rate: f64,
    /// Most unregistered connections from one source.
    #[arg(
        long,
        env = "RINGCHAT_MAX_UNREGISTERED_PER_SOURCE",
        default_value_t = 8
    )]
    pub max_unregistered_per_source: u32,
    /// Most unregistered connections from all sources together.
    #[arg(long, env = "RINGCHAT_MAX_UNREGISTERED", default_value_t = 4096)]
    pub max_unregistered: usize,
    /// Networks exempt from the per-source limits (comma list of CIDRs; '' for none).
    #[arg(
        long,
        env = "RINGCHAT_EXEMPT",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub exempt: Vec<String>,
    /// Prefix length that makes one IPv6 source.
    #[arg(long, env = "RINGCHAT_IPV6_SOURCE_PREFIX", default_value_t = 64)]
    pub ipv6_source_prefix: u8,
    /// Most channels one client may join.
    #[arg(long, env = "RINGCHAT_MAX_CHANNELS", default_value_t = 50)]
    pub max_channels: usize,
    /// Refuse every command whose line is not valid UTF-8 (a FAIL reply with code
    /// INVALID_UTF8), and advertise UTF8ONLY.
    #[arg(long, env = "RINGCHAT_UTF8_ONLY")]
    pub utf8_only: bool,
    /// Runtimes (threads), one per core [default: available cores].
    #[arg(long, env = "RINGCHAT_SHARDS")]
    pub shards: Option<usize>,
    /// I/O driver: io_uring, epoll, or io_uring when the kernel allows it.
    #[arg(long, env = "RINGCHAT_IO", value_enum, default_value = "auto")]
    pub io: IoMode,
    /// Log format (filter with RUST_LOG, e.g. RUST_LOG=ringchat=debug).
    #[arg(long, env = "RINGCHAT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Append logs to this file instead of stderr; reopened on SIGHUP (logrotate).
    #[arg(long, env = "RINGCHAT_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100) [default: off].
    #[arg(long, env = "RINGCHAT_METRICS", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Join a cluster through these NATS servers (comma list of nats://HOST:PORT; the
    /// cluster is named by --network) [default: run alone].
    #[arg(
        long,
        env = "RINGCHAT_CLUSTER",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub cluster: Vec<String>,
    /// This node's number in the cluster, unique among its nodes [default: the
    /// lowest number no live node holds].
    #[arg(long, env = "RINGCHAT_NODE_ID")]
    pub node_id: Option<u16>,
    /// NATS credentials file (.creds: JWT and NKey seed) for the cluster connection.
    #[arg(long, env = "RINGCHAT_CLUSTER_CREDENTIALS", value_name = "FILE")]
    pub cluster_credentials: Option<PathBuf>,
    /// PEM file of CA certificates that the NATS servers' TLS certificates must chain
    /// to; TLS is then required on the cluster connection.
    #[arg(long, env = "RINGCHAT_CLUSTER_CA", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// Seconds without a heartbeat after which another node is declared lost and its
    /// users quit.
    #[arg(long, env = "RINGCHAT_NODE_TIMEOUT", default_value_t = 5)]
    pub node_timeout: u64,
    /// Events between two snapshots of the network state written to the cluster.
    #[arg(long, env = "RINGCHAT_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub snapshot_every: u64,
}
