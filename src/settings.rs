//! What the server runs with: each setting from its flag or `RINGCHAT_*` variable if
//! given, else from the config file, else its default. Reads the files the settings
//! name (config, MOTD) and resolves listen host names; runs at start, for
//! `--check-config` and on every reload. Applies nothing.
//!
//! clap resolves flag over environment over default; `ArgMatches::value_source` tells
//! a default from a value someone gave, and only a default yields to the file. Adding
//! a flag with a key is a field in `Cli`, one in `FileSettings`, and one line below.

use crate::ban_file;
use crate::cli::Cli;
use crate::config::{available_cores, default_max_clients, ClusterConfig, Config, StsPolicy};
use crate::config_file::{ConfigFile, OperSettings};
use crate::logging::LogFormat;
use crate::opers::{check_hash, OperBlock};
use crate::state::sources::SourceLimits;
use crate::tls::TlsFiles;
use anyhow::{anyhow, Context};
use clap::parser::ValueSource;
use clap::ArgMatches;
use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the process runs with: the server's [`Config`] and what `main` handles
/// around the server (logs, metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The server's settings.
    pub config: Config,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log file instead of stderr.
    pub log_file: Option<PathBuf>,
    /// The config file the settings came from, for reloads.
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// Merges flags and environment (`cli` as parsed from `matches`) over the file
    /// `config_file` (if any) over the defaults, reading every file named. The error is
    /// one line naming the flag, or the key with its file position.
    pub fn load(
        cli: &Cli,
        matches: &ArgMatches,
        config_file: Option<&Path>,
    ) -> anyhow::Result<Settings> {
        let file = config_file.map(ConfigFile::load).transpose()?;
        let mut merge = Merge {
            matches,
            file: file.as_ref(),
            from_file: Vec::new(),
        };
        let f = file
            .as_ref()
            .map(|file| file.settings.clone())
            .unwrap_or_default();

        let cluster = cluster(&mut merge, cli, &f)?;
        let listen = merge.value("listen", &cli.listen, f.listen);
        let listen = resolve_all(&listen).map_err(|problem| merge.error("listen", problem))?;
        let tls_listen = merge.value("tls-listen", &cli.tls_listen, f.tls_listen);
        let tls_listen =
            resolve_all(&tls_listen).map_err(|problem| merge.error("tls-listen", problem))?;
        let tls_cert = merge.path("tls-cert", &cli.tls_cert, f.tls_cert);
        let tls_key = merge.path("tls-key", &cli.tls_key, f.tls_key);
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(merge.error("tls-cert", "and --tls-key go together")),
            (None, Some(_)) => return Err(merge.error("tls-key", "and --tls-cert go together")),
        };
        let sts_duration = merge.value("sts-duration", &cli.sts_duration, f.sts_duration);
        let sts = merge
            .option("sts-port", &cli.sts_port, f.sts_port)
            .map(|port| StsPolicy {
                port,
                duration: seconds(sts_duration),
            });
        let motd_path = merge.path("motd", &cli.motd, f.motd);
        let motd = motd_path
            .as_deref()
            .map(read_motd)
            .transpose()
            .map_err(|problem| merge.error("motd", format!("{problem:#}")))?;
        let exempt = merge.value("exempt", &cli.exempt, f.exempt);
        let exempt = parse_networks(&exempt).map_err(|problem| merge.error("exempt", problem))?;
        let metrics = merge.option("metrics", &cli.metrics, f.metrics);
        let metrics = metrics
            .map(|addr| resolve_one(&addr))
            .transpose()
            .map_err(|problem| merge.error("metrics", problem))?;
        let config = Config {
            cluster,
            listen,
            tls_listen,
            tls,
            sts,
            server_name: merge.value("server-name", &cli.server_name, f.server_name),
            server_info: merge.value("server-info", &cli.server_info, f.server_info),
            network: merge.value("network", &cli.network, f.network),
            password: merge.option("password", &cli.password, f.password),
            motd,
            max_clients: merge
                .option("max-clients", &cli.max_clients, f.max_clients)
                .unwrap_or_else(default_max_clients),
            sendq: merge.value("sendq", &cli.sendq, f.sendq),
            recvq: merge.value("recvq", &cli.recvq, f.recvq),
            flood_burst: merge.value("flood-burst", &cli.flood_burst, f.flood_burst),
            flood_rate: merge.value("flood-rate", &cli.flood_rate, f.flood_rate),
            ping_interval: seconds(merge.value(
                "ping-interval",
                &cli.ping_interval,
                f.ping_interval,
            )),
            ping_timeout: seconds(merge.value("ping-timeout", &cli.ping_timeout, f.ping_timeout)),
            registration_timeout: seconds(merge.value(
                "registration-timeout",
                &cli.registration_timeout,
                f.registration_timeout,
            )),
            shutdown_timeout: seconds(merge.value(
                "shutdown-timeout",
                &cli.shutdown_timeout,
                f.shutdown_timeout,
            )),
            write_timeout: seconds(merge.value(
                "write-timeout",
                &cli.write_timeout,
                f.write_timeout,
            )),
            sources: SourceLimits {
                max_connections: merge.value(
                    "max-per-source",
                    &cli.max_per_source,
                    f.max_per_source,
                ),
                connect_burst: merge.value(
                    "source-connect-burst",
                    &cli.source_connect_burst,
                    f.source_connect_burst,
                ),
                connect_rate: merge.value(
                    "source-connect-rate",
                    &cli.source_connect_rate,
                    f.source_connect_rate,
                ),
                max_unregistered: merge.value(
                    "max-unregistered-per-source",
                    &cli.max_unregistered_per_source,
                    f.max_unregistered_per_source,
                ),
                max_unregistered_total: merge.value(
                    "max-unregistered",
                    &cli.max_unregistered,
                    f.max_unregistered,
                ),
                exempt,
                ipv6_prefix: merge.value(
                    "ipv6-source-prefix",
                    &cli.ipv6_source_prefix,
                    f.ipv6_source_prefix,
                ),
            },
            max_channels_per_client: merge.value("max-channels", &cli.max_channels, f.max_channels),
            utf8_only: merge.value("utf8-only", &cli.utf8_only, f.utf8_only),
            shards: merge
                .option("shards", &cli.shards, f.shards)
                .unwrap_or_else(available_cores),
            io: merge.value("io", &cli.io, f.io),
            ring_buffers: crate::config::DEFAULT_RING_BUFFERS,
            opers: opers(file.as_ref(), f.oper.unwrap_or_default())?,
            ban_file: None,
            server_bans: Vec::new(),
        };
        let ban_file = file
            .as_ref()
            .map(|file| file.resolve_path(Path::new(BAN_FILE)));
        let config = Config {
            server_bans: match &ban_file {
                Some(path) => ban_file::load(path, unix_now())?,
                None => Vec::new(),
            },
            ban_file,
            ..config
        };
        config
            .check()
            .map_err(|invalid| merge.error(invalid.key, invalid.problem))?;
        Ok(Settings {
            config,
            metrics,
            log_format: merge.value("log-format", &cli.log_format, f.log_format),
            log_file: merge.path("log-file", &cli.log_file, f.log_file),
            config_file: config_file.map(Path::to_owned),
        })
    }
}

/// The cluster settings when `cluster` names NATS servers; checked here because
/// each key needs its own flag or file position in the error.
fn cluster(
    merge: &mut Merge<'_>,
    cli: &Cli,
    f: &crate::config_file::FileSettings,
) -> anyhow::Result<Option<ClusterConfig>> {
    let servers = merge.value("cluster", &cli.cluster, f.cluster.clone());
    let servers: Vec<String> = servers.into_iter().filter(|s| !s.is_empty()).collect();
    let node = merge.option("node-id", &cli.node_id, f.node_id);
    let credentials = merge.path(
        "cluster-credentials",
        &cli.cluster_credentials,
        f.cluster_credentials.clone(),
    );
    let ca = merge.path("cluster-ca", &cli.cluster_ca, f.cluster_ca.clone());
    let node_timeout = merge.value("node-timeout", &cli.node_timeout, f.node_timeout);
    let snapshot_every = merge.value("snapshot-every", &cli.snapshot_every, f.snapshot_every);
    if servers.is_empty() {
        return Ok(None);
    }
    for server in &servers {
        if !(server.starts_with("nats://") || server.starts_with("tls://")) {
            return Err(merge.error(
                "cluster",
                format!("{server:?} is not a nats://HOST:PORT or tls://HOST:PORT address"),
            ));
        }
    }
    if node_timeout == 0 {
        return Err(merge.error("node-timeout", "must be at least 1 second"));
    }
    if snapshot_every == 0 {
        return Err(merge.error("snapshot-every", "must be at least 1 event"));
    }
    Ok(Some(ClusterConfig {
        servers,
        node: node.unwrap_or(0),
        pick_node_id: node.is_none(),
        credentials,
        ca,
        node_timeout: seconds(node_timeout),
        snapshot_every,
    }))
}

/// The ban file's name, in the config file's directory.
pub const BAN_FILE: &str = "bans.toml";

fn unix_now() -> u64 {
    crate::proto::time::unix_seconds(std::time::SystemTime::now())
}

/// The `[[oper]]` blocks as the server uses them; a password that is not an argon2
/// hash is refused with the block's position (a plain password must never sit in a
/// file the server accepts).
fn opers(file: Option<&ConfigFile>, blocks: Vec<OperSettings>) -> anyhow::Result<Vec<OperBlock>> {
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            let refuse = |field: &str, problem: String| match file {
                Some(file) => file.error_in_block("oper", index, field, problem),
                None => anyhow!("oper[{index}].{field}: {problem}"),
            };
            if block.name.is_empty() || block.name.contains(' ') {
                return Err(refuse("name", "must be one word".to_owned()));
            }
            check_hash(&block.password).map_err(|problem| refuse("password", problem))?;
            Ok(OperBlock {
                name: block.name,
                password_hash: block.password,
                hosts: block.hosts.unwrap_or_default(),
            })
        })
        .collect()
}

/// Picks each setting's source and remembers which came from the file, so an error
/// can point at the file or at the flag.
struct Merge<'a> {
    matches: &'a ArgMatches,
    file: Option<&'a ConfigFile>,
    from_file: Vec<&'static str>,
}

impl Merge<'_> {
    /// A setting with a default in `Cli`: the flag or variable if given, else the file.
    fn value<T: Clone>(&mut self, key: &'static str, flag: &T, file: Option<T>) -> T {
        let given = matches!(
            self.matches.value_source(&key.replace('-', "_")),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        match file {
            Some(value) if !given => {
                self.from_file.push(key);
                value
            }
            _ => flag.clone(),
        }
    }

    /// A setting without a default in `Cli`: the flag or variable, else the file.
    fn option<T: Clone>(
        &mut self,
        key: &'static str,
        flag: &Option<T>,
        file: Option<T>,
    ) -> Option<T> {
        if flag.is_some() {
            return flag.clone();
        }
        if file.is_some() {
            self.from_file.push(key);
        }
        file
    }

    /// A path setting; a path from the file is relative to the file's directory.
    fn path(
        &mut self,
        key: &'static str,
        flag: &Option<PathBuf>,
        file: Option<PathBuf>,
    ) -> Option<PathBuf> {
        let path = self.option(key, flag, file)?;
        Some(match self.file {
            Some(config) if self.from_file.contains(&key) => config.resolve_path(&path),
            _ => path,
        })
    }

    /// An error about `key`: at its position in the file if the file set it, else
    /// about its flag.
    fn error(&self, key: &str, problem: impl Display) -> anyhow::Error {
        match self.file {
            Some(file) if self.from_file.contains(&key) => file.error_at(key, problem),
            _ => anyhow!("--{key} {problem}"),
        }
    }
}

/// `--exempt`'s networks; an empty item (`--exempt ''`) means none.
fn parse_networks(items: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{item}` is not a network (e.g. 10.0.0.0/8)"))
        })
        .collect()
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn read_motd(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read MOTD file {}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Every address the names resolve to, in order, without repeats.
fn resolve_all(names: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::new();
    for name in names {
        for addr in resolve(name)? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

fn resolve_one(name: &str) -> Result<SocketAddr, String> {
    resolve(name).map(|addrs| addrs[0])
}

/// `HOST:PORT` or an IP address with a port, resolved now.
fn resolve(name: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = name
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve `{name}` (want HOST:PORT): {error}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{name}` resolves to no address"));
    }
    Ok(addrs)
}
