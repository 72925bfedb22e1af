//! The command line: scenarios as subcommands, plus `compare` and `plot`.
//!
//! Owns: flag definitions, defaults and value parsers. Must not: run anything.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Serialize, Serializer};

/// Latency and throughput benchmark for any IRC server (open loop, coordinated-omission
/// free, every delivery verified).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One channel with C members; S of them send at a total rate; every other member
    /// receives every message.
    Fanout {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Number of senders (the first S clients).
        #[arg(short, long, default_value_t = 10)]
        senders: u32,
    },
    /// C clients spread over K channels; every member (or S per channel) sends.
    Rooms {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Number of channels (clients are spread round robin).
        #[arg(short = 'k', long, default_value_t = 10)]
        channels: u32,
        /// Senders per channel (default: every member sends).
        #[arg(short, long)]
        senders: Option<u32>,
    },
    /// Connection and registration storm: connections per second and time to 001.
    Connect {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// C registered idle clients held for a while: server memory per connection
    /// (needs --server-pid).
    Idle {
        #[command(flatten)]
        common: CommonArgs,
        /// How long to hold the idle clients.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        hold: Duration,
        /// Channels the idle clients join, round robin (0: none). Memberships are
        /// part of what an idle client costs a server.
        #[arg(short = 'k', long, default_value_t = 0)]
        channels: u32,
        #[command(flatten)]
        churn: ChurnArgs,
    },
    /// Compare a result with a baseline, both made with --repeat: exits 1 when a figure
    /// is significantly slower beyond its tolerance or the result lost messages, 2 when
    /// the scenario parameters differ or there are too few runs to decide.
    Compare(CompareArgs),
    /// Plot latency by percentile of one or more result files (.json or .hgrm) as SVG and PNG (same name, .png beside the .svg).
    Plot(PlotArgs),
    /// Print one table of several JSON results (one row per step of each file).
    Summary {
        /// loadgen JSON results.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// The churn of `idle`: members leaving and joining again during the hold, and
/// members that stop reading, while another loadgen measures bystanders.
#[derive(Debug, Clone, Copy, Args, Serialize)]
pub struct ChurnArgs {
    /// Members (the first N clients) that PART their channel and JOIN it again,
    /// in turn, during the hold (0: none).
    #[arg(long, default_value_t = 0)]
    pub churners: u32,
    /// PART + JOIN cycles per second over all churners.
    #[arg(long, default_value_t = 10.0)]
    pub churn_rate: f64,
    /// Members (the last N clients) that stop reading once set up, so the server
    /// queues their lines until their sendq is exceeded; they read again to close.
    #[arg(long, default_value_t = 0)]
    pub silent: u32,
}

/// Flags every scenario has.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CommonArgs {
    /// Server address, or a comma-separated list of a cluster's nodes
    /// (`127.0.0.1:6667,127.0.0.1:6668`): the clients are spread round robin over them.
    #[arg(short, long, default_value = "127.0.0.1:6667")]
    pub addr: ServerAddrs,
    /// Server password (sent with PASS before registering).
    #[arg(long)]
    #[serde(skip)]
    pub password: Option<String>,
    /// Number of clients.
    #[arg(short, long, default_value_t = 100)]
    pub clients: u32,
    /// Connections being set up at once (connect, register, join). Keep it below the
    /// server's listen backlog (ngircd: 10).
    #[arg(long, default_value_t = 8)]
    pub connect_concurrency: u32,
    /// Give up when a client is not registered and joined within this time.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub setup_timeout: Duration,
    /// Loopback source addresses to spread connections over (127.0.0.1, .2, ...);
    /// 0 = one per 25,000 clients when the server is on 127.0.0.0/8.
    #[arg(long, default_value_t = 0)]
    pub source_ips: u32,
    /// Server process to sample (CPU seconds and RSS over the measured window, /proc);
    /// a comma-separated list for a cluster (`123,456`): their sum is reported, and
    /// each one's share.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Pin loadgen to this CPU core (with --threads N: thread i to core CPU+i).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Threads of load (fanout, rooms): clients spread round robin over N threads,
    /// each its own single-threaded runtime and pacer; figures merged exactly.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Write all figures, the parameters and versions to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HdrHistogram percentile distribution (one file per step when several:
    /// NAME-<rate>.hgrm).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write a chart of latency by percentile: this SVG and a PNG beside it.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// A name for this run in reports and plots (e.g. "ringchat-uring").
    #[arg(long)]
    pub label: Option<String>,
    /// No live progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Connect over TLS, verifying the server against the system's CA certificates
    /// (or --tls-ca, or not at all with --tls-insecure).
    #[arg(long)]
    pub tls: bool,
    /// With --tls: accept any server certificate (self-signed test servers).
    #[arg(long, requires = "tls")]
    pub tls_insecure: bool,
    /// With --tls: trust the certificates in this PEM file instead of the system's.
    #[arg(long, requires = "tls", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls: the name the server's certificate must carry (default: the
    /// address's IP).
    #[arg(long, requires = "tls")]
    pub tls_server_name: Option<String>,
    /// Speak IRC over WebSocket (IRCv3, binary.ircv3.net) to a WebSocket listener
    /// (ringchat's --websocket-listen; inside TLS with --tls).
    #[arg(long)]
    pub websocket: bool,
    /// Log every client in with SASL PLAIN to this account before it registers
    /// (`account:password`; the server must offer the `sasl` capability). With
    /// `connect` this measures logins per second; paced with --connect-rate it is a
    /// login storm beside another run's bystanders.
    #[arg(long, value_name = "ACCOUNT:PASSWORD")]
    #[serde(skip)]
    pub sasl: Option<String>,
    /// Start at most this many clients per second (0: as fast as
    /// --connect-concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
}

impl CommonArgs {
    /// True when the clients connect over TLS.
    pub fn tls_wanted(&self) -> bool {
        self.tls
    }
}

/// The servers of `--addr`: one address, or the nodes of a cluster, in the order given
/// (client assignment depends on it). Never empty, no address twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddrs(Vec<SocketAddr>);

impl ServerAddrs {
    /// Every address, in the order given.
    pub fn all(&self) -> &[SocketAddr] {
        &self.0
    }

    /// The first address (the only one, without a cluster).
    pub fn first(&self) -> SocketAddr {
        self.0[0]
    }
}

impl FromStr for ServerAddrs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let addr: SocketAddr = item
                .parse()
                .map_err(|_| format!("{item:?} is not an IP:PORT address (e.g. 127.0.0.1:6667)"))?;
            if addrs.contains(&addr) {
                return Err(format!("{addr} is listed twice"));
            }
            addrs.push(addr);
        }
        Ok(Self(addrs))
    }
}

impl fmt::Display for ServerAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

/// As the flag was written (`"127.0.0.1:6667"`, or a comma-separated list), so a
/// single address reads in the JSON as it always did.
impl Serialize for ServerAddrs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Flags of the message scenarios (fanout, rooms).
#[derive(Debug, Clone, Args, Serialize)]
pub struct TrafficArgs {
    /// Total messages per second over all senders; a list steps through the rates
    /// on the same connections: `--rate 100,200,500`.
    #[arg(short, long, value_delimiter = ',', default_values_t = [1000.0])]
    pub rate: Vec<f64>,
    /// Measured time of each step.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each step's measurement (sent and verified, not measured).
    #[arg(short, long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After a step's last message, wait at most this long for deliveries in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Message text length in bytes (padded; minimum is the payload, ~30 bytes).
    #[arg(long, default_value_t = 0)]
    pub size: usize,
    /// Saturation search: from the first --rate, double while a step passes, then
    /// bisect; reports the highest rate with zero loss and p99 under --p99-max.
    #[arg(long)]
    pub find_max: bool,
    /// The p99 bound of --find-max.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub p99_max: Duration,
    /// The most steps --find-max runs.
    #[arg(long, default_value_t = 12)]
    pub max_probes: u32,
    /// Run every step N times (the rate list N times over, round robin) on the same
    /// connections, each with its own warm-up: `compare` judges the spread of the N runs.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline result (JSON from --json, made with --repeat N).
    pub baseline: PathBuf,
    /// The new result (JSON from --json, made with --repeat N).
    pub result: PathBuf,
    /// Smallest change of throughput or server CPU per delivery that counts as a
    /// change (when it is also significant).
    #[arg(long, default_value = "5%", value_parser = parse_percent)]
    pub max_regress: f64,
    /// Smallest change of p50 or p99 that counts (latency is noisier than throughput).
    #[arg(long, default_value = "10%", value_parser = parse_percent)]
    pub max_p99_regress: f64,
    /// Significance level: a change counts only when the Mann-Whitney test gives p
    /// below it (0.01 needs at least 5 runs per side).
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// Compare results whose scenario parameters differ (refused by default).
    #[arg(long)]
    pub allow_param_diff: bool,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The SVG file to write (a PNG of the same chart is written beside it).
    pub output: PathBuf,
    /// Result files: loadgen JSON (one line per step) or .hgrm percentile distributions.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Chart title.
    #[arg(long)]
    pub title: Option<String>,
    /// A linear latency axis even when latencies span more than 20x (log by default then).
    #[arg(long)]
    pub linear: bool,
}

/// Parses `10s`, `500ms`, `250us`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 10s, 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (s, ms, us, m)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("not a duration: {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `10%` or `10` as 0.10.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a percentage: {text:?} (try 10%)"))?;
    if !(0.0..=1000.0).contains(&value) {
        return Err(format!("percentage out of range: {text:?}"));
    }
    Ok(value / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_durations_and_percents() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("2.5"), Ok(0.025));
        assert!(parse_percent("x%").is_err());
    }

    #[test]
    fn rate_list_steps() {
        let cli =
            Cli::try_parse_from(["loadgen", "fanout", "--rate", "100,200,500"]).expect("parses");
        match cli.command {
            Command::Fanout { traffic, .. } => assert_eq!(traffic.rate, vec![100.0, 200.0, 500.0]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn address_lists() {
        let one: ServerAddrs = "127.0.0.1:6667".parse().expect("one");
        assert_eq!(one.all().len(), 1);
        assert_eq!(one.to_string(), "127.0.0.1:6667");
        let two: ServerAddrs = "127.0.0.1:1, 127.0.0.2:2".parse().expect("two");
        assert_eq!(two.first(), SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(two.to_string(), "127.0.0.1:1,127.0.0.2:2");
        assert_eq!(
            serde_json::to_value(&two).expect("serializes"),
            serde_json::json!("127.0.0.1:1,127.0.0.2:2")
        );
        let twice = "127.0.0.1:1,127.0.0.1:1"
            .parse::<ServerAddrs>()
            .unwrap_err();
        assert!(twice.contains("listed twice"), "{twice}");
        assert!("127.0.0.1:1,".parse::<ServerAddrs>().is_err());
        assert!("localhost".parse::<ServerAddrs>().is_err());
        let cli =
            Cli::try_parse_from(["loadgen", "idle", "--server-pid", "12,34"]).expect("parses");
        match cli.command {
            Command::Idle { common, .. } => assert_eq!(common.server_pid, vec![12, 34]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
