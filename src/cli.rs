//! The command line: every flag, its default, and its `RINGCHAT_*` variable.

use crate::config::{available_cores, default_max_clients, Config, IoMode};
use crate::state::sources::SourceLimits;
use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// ringchat: a multi-client IRC chat server on io_uring.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on (repeat for several; IPv4 or IPv6, e.g. [::]:6667).
    #[arg(
        long,
        env = "RINGCHAT_LISTEN",
        default_value = "0.0.0.0:6667",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,
    /// Server name shown as the source of server replies.
    #[arg(long, env = "RINGCHAT_SERVER_NAME", default_value = "ringchat.local")]
    pub server_name: String,
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
    /// Networks exempt from the per-source limits (comma list of CIDRs; empty for
    /// none).
    #[arg(
        long,
        env = "RINGCHAT_EXEMPT",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub exempt: Vec<String>,
    /// Prefix length that makes one IPv6 source.
    #[arg(long, env = "RINGCHAT_IPV6_SOURCE_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_source_prefix: u8,
    /// Most channels one client may join.
    #[arg(long, env = "RINGCHAT_MAX_CHANNELS", default_value_t = 50)]
    pub max_channels: usize,
    /// Runtimes (threads), one per core [default: available cores].
    #[arg(long, env = "RINGCHAT_SHARDS")]
    pub shards: Option<usize>,
    /// I/O driver: io_uring, epoll, or io_uring when the kernel allows it.
    #[arg(long, env = "RINGCHAT_IO", value_enum, default_value = "auto")]
    pub io: IoMode,
    /// Log format (filter with RUST_LOG, e.g. RUST_LOG=ringchat=debug).
    #[arg(long, env = "RINGCHAT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Cli {
    /// Builds the server configuration, reading the MOTD file.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let motd = match &self.motd {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read MOTD file {}", path.display()))?;
                Some(text.lines().map(str::to_owned).collect())
            }
            None => None,
        };
        Ok(Config {
            listen: self.listen,
            server_name: self.server_name,
            network: self.network,
            password: self.password,
            motd,
            max_clients: self.max_clients.unwrap_or_else(default_max_clients),
            sendq: self.sendq,
            recvq: self.recvq,
            flood_burst: self.flood_burst,
            flood_rate: self.flood_rate,
            ping_interval: Duration::from_secs(self.ping_interval),
            ping_timeout: Duration::from_secs(self.ping_timeout),
            registration_timeout: Duration::from_secs(self.registration_timeout),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            write_timeout: Duration::from_secs(self.write_timeout),
            sources: SourceLimits {
                max_connections: self.max_per_source,
                connect_burst: self.source_connect_burst,
                connect_rate: self.source_connect_rate,
                max_unregistered: self.max_unregistered_per_source,
                max_unregistered_total: self.max_unregistered,
                exempt: parse_networks(&self.exempt)?,
                ipv6_prefix: self.ipv6_source_prefix,
            },
            max_channels_per_client: self.max_channels,
            shards: self.shards.unwrap_or_else(available_cores),
            io: self.io,
        })
    }
}

/// Parses `--exempt`'s networks; an empty item (`--exempt ''`) means none.
fn parse_networks(items: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!("--exempt: {item:?} is not a network (e.g. 10.0.0.0/8)")
                })
        })
        .collect()
}
