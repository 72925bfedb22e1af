//! The command line: every flag, its default, and its `RINGCHAT_*` variable.

use crate::config::{available_cores, default_max_clients, Config, IoMode, StsPolicy};
use crate::tls::TlsFiles;
use anyhow::{bail, Context};
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
    /// Address to listen on with TLS (repeat for several), e.g. 0.0.0.0:6697; needs
    /// --tls-cert and --tls-key.
    #[arg(long, env = "RINGCHAT_TLS_LISTEN", value_delimiter = ',')]
    pub tls_listen: Vec<SocketAddr>,
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
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        Ok(Config {
            listen: self.listen,
            tls_listen: self.tls_listen,
            tls,
            sts: self.sts_port.map(|port| StsPolicy {
                port,
                duration: Duration::from_secs(self.sts_duration),
            }),
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
            max_channels_per_client: self.max_channels,
            shards: self.shards.unwrap_or_else(available_cores),
            io: self.io,
        })
    }
}
