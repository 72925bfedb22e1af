//! What the server runs with: each setting from its flag or `RINGCHAT_*` variable if
//! given, else from the config file, else its default. Reads the files the settings
//! name (config, MOTD, ban file, TLS, cluster credentials) and resolves listen host
//! names, and runs every check a start runs; runs at start, for `--check-config` and
//! on every reload. Applies nothing.
//!
//! Each setting is declared once ([`declared`]); the flags ([`cli`]), the file's keys
//! ([`config_file`]), the merge and the reload comparison ([`Values`]), the checks
//! ([`checks`]) and the documentation ([`docs`]) are generated from that list.
//! clap resolves flag over environment over default; `ArgMatches::value_source` tells
//! a default from a value someone gave, and only a default yields to the file.

pub mod checks;
pub mod cli;
pub mod config_file;
pub mod declared;
pub mod docs;

use crate::ban_file;
use crate::bans::ServerBan;
use crate::config::{
    available_cores, default_max_clients, AdminInfo, ClusterConfig, Config, IoMode, SourceLimits,
    StsPolicy, DEFAULT_RING_BUFFERS,
};
use crate::logging::LogFormat;
use crate::opers::{check_hash, OperBlock};
use crate::tls::TlsFiles;
use anyhow::anyhow;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use cli::Cli;
use config_file::{ConfigFile, Number, OperSettings};
use declared::{with_settings, Reload};
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
    /// A `bans.toml` beside the config file that the bans were read from because the
    /// data directory has none yet: the start copies it there (once).
    pub legacy_bans: Option<PathBuf>,
    /// Every declared setting as merged, before conversion: what a reload compares
    /// to find the changed settings that need a restart.
    pub values: Values,
}

impl Settings {
    /// Merges flags and environment (`cli` as parsed from `matches`) over the file
    /// `config_file` (if any) over the defaults, reading every file named and running
    /// every check a start runs (`--check-config` is this). The error is one line
    /// naming the flag, or the key with its file position.
    pub fn load(
        cli: &Cli,
        matches: &ArgMatches,
        config_file: Option<&Path>,
    ) -> anyhow::Result<Settings> {
        let file = config_file.map(ConfigFile::load).transpose()?;
        let (settings, merge) = Settings::read(cli, matches, file.as_ref())?;
        checks::files_of(&settings.config, settings.log_file.as_deref())
            .map_err(|invalid| merge.error(invalid.key, invalid.problem))?;
        Ok(settings)
    }

    /// What a reload reads: as [`Settings::load`], without the checks of the files
    /// only a start opens (a reload re-reads the TLS files on its own, keeping the old
    /// ones if the new ones are bad, and the others need a restart anyway).
    pub fn reload(
        cli: &Cli,
        matches: &ArgMatches,
        config_file: Option<&Path>,
    ) -> anyhow::Result<Settings> {
        let file = config_file.map(ConfigFile::load).transpose()?;
        Settings::read(cli, matches, file.as_ref()).map(|(settings, _)| settings)
    }

    /// The settings and which of them came from the file.
    fn read<'a>(
        cli: &Cli,
        matches: &'a ArgMatches,
        file: Option<&'a ConfigFile>,
    ) -> anyhow::Result<(Settings, Merge<'a>)> {
        let (values, merge) = Values::merge(cli, matches, file);
        values.check(&merge)?;
        let opers = opers(
            file,
            file.and_then(|file| file.settings.oper.clone())
                .unwrap_or_default(),
        )?;
        let data_dir = data_dir(values.data_dir.as_deref());
        checks::data_dir_can_be_used(&data_dir)
            .map_err(|problem| merge.error("data-dir", problem))?;
        let ban_file = data_dir.join(BAN_FILE);
        // A ban file beside the config (where bans were kept before the data
        // directory) is read only while the data directory has none.
        let legacy_bans = file
            .map(|file| file.resolve_path(Path::new(BAN_FILE)))
            .filter(|legacy| *legacy != ban_file && legacy.exists() && !ban_file.exists());
        let server_bans = ban_file::load(legacy_bans.as_ref().unwrap_or(&ban_file), unix_now())?;
        let settings = values.into_settings(&merge, opers, Some(ban_file), server_bans)?;
        checks::check_config(&settings.config)
            .map_err(|invalid| merge.error(invalid.key, invalid.problem))?;
        let settings = Settings {
            config: Config {
                data_dir: Some(data_dir),
                ..settings.config
            },
            config_file: file.map(|file| file.path().to_owned()),
            legacy_bans,
            ..settings
        };
        Ok((settings, merge))
    }

    /// The settings every declared default gives, with no flag, variable or file:
    /// what `Config::default()` is.
    pub fn defaults() -> Settings {
        let merge = Merge {
            file: None,
            from_file: Vec::new(),
        };
        Values::defaults()
            .into_settings(&merge, Vec::new(), None, Vec::new())
            .expect("the declared defaults are valid")
    }
}

impl Default for Config {
    /// The declared defaults ([`declared`]): the same values a start without flags,
    /// variables or file runs with.
    fn default() -> Config {
        Settings::defaults().config
    }
}

impl Values {
    /// Every setting's declared default (no flag, variable or file).
    pub fn defaults() -> Values {
        let matches = cli::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["ringchat"])
            .expect("the declared defaults parse");
        let cli = Cli::from_arg_matches(&matches).expect("the declared defaults fit Cli");
        Values::merge(&cli, &matches, None).0
    }

    /// The settings these values make: addresses resolved, the MOTD read, units
    /// applied. `merge` knows which values came from the file, for errors.
    fn into_settings(
        self,
        merge: &Merge<'_>,
        opers: Vec<OperBlock>,
        ban_file: Option<PathBuf>,
        server_bans: Vec<ServerBan>,
    ) -> anyhow::Result<Settings> {
        let values = self.clone();
        let v = self;
        let cluster = cluster(merge, &v)?;
        let listen = resolve_all(&v.listen).map_err(|problem| merge.error("listen", problem))?;
        let tls_listen =
            resolve_all(&v.tls_listen).map_err(|problem| merge.error("tls-listen", problem))?;
        let websocket_listen = resolve_all(&v.websocket_listen)
            .map_err(|problem| merge.error("websocket-listen", problem))?;
        let websocket_tls_listen = resolve_all(&v.websocket_tls_listen)
            .map_err(|problem| merge.error("websocket-tls-listen", problem))?;
        let websocket_proxies = parse_networks(&v.websocket_proxies)
            .map_err(|problem| merge.error("websocket-proxies", problem))?;
        let webirc = parse_gateways(&v.webirc).map_err(|problem| merge.error("webirc", problem))?;
        let tls = match (v.tls_cert, v.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(merge.error("tls-cert", "and --tls-key go together")),
            (None, Some(_)) => return Err(merge.error("tls-key", "and --tls-cert go together")),
        };
        let sts = v.sts_port.map(|port| StsPolicy {
            port,
            duration: seconds(v.sts_duration),
        });
        let motd = v
            .motd
            .as_deref()
            .map(read_motd)
            .transpose()
            .map_err(|problem| merge.error("motd", problem))?;
        let exempt = parse_networks(&v.exempt).map_err(|problem| merge.error("exempt", problem))?;
        let metrics = v
            .metrics
            .map(|addr| resolve_one(&addr))
            .transpose()
            .map_err(|problem| merge.error("metrics", problem))?;
        let config = Config {
            cluster,
            listen,
            tls_listen,
            tls,
            websocket_listen,
            websocket_tls_listen,
            websocket_origins: v.websocket_origins,
            websocket_proxies,
            webirc,
            sts,
            server_name: v.server_name,
            server_info: v.server_info,
            network: v.network,
            password: v.password,
            motd,
            max_clients: v.max_clients.unwrap_or_else(default_max_clients),
            sendq: v.sendq,
            recvq: v.recvq,
            flood_burst: v.flood_burst,
            flood_rate: v.flood_rate,
            ping_interval: seconds(v.ping_interval),
            ping_timeout: seconds(v.ping_timeout),
            registration_timeout: seconds(v.registration_timeout),
            shutdown_timeout: seconds(v.shutdown_timeout),
            write_timeout: seconds(v.write_timeout),
            nick_grace: seconds(v.nick_grace),
            min_password_len: v.min_password_len,
            sources: SourceLimits {
                max_connections: v.max_per_source,
                connect_burst: v.source_connect_burst,
                connect_rate: v.source_connect_rate,
                max_unregistered: v.max_unregistered_per_source,
                max_unregistered_total: v.max_unregistered,
                exempt,
                ipv6_prefix: v.ipv6_source_prefix,
            },
            max_channels_per_client: v.max_channels,
            utf8_only: v.utf8_only,
            cloak_hosts: !v.show_addresses,
            cloak_secret: v.cloak_secret,
            shards: v.shards.unwrap_or_else(available_cores),
            io: v.io,
            ring_buffers: DEFAULT_RING_BUFFERS,
            opers,
            ban_file,
            data_dir: None,
            server_bans,
            max_ban_share: v.max_ban_share,
            history_max_messages: v.history_max_messages,
            history_max_age: seconds(v.history_max_days.saturating_mul(86_400)),
            history_private_cutoff: v.history_private_cutoff,
            admin: AdminInfo {
                location: v.admin_location,
                name: v.admin_name,
                email: v.admin_email,
            },
        };
        Ok(Settings {
            config,
            metrics,
            log_format: v.log_format,
            log_file: v.log_file,
            config_file: None,
            legacy_bans: None,
            values,
        })
    }
}

/// The cluster settings when `cluster` names NATS servers; checked here because
/// the checks of the other cluster keys apply only then.
fn cluster(merge: &Merge<'_>, v: &Values) -> anyhow::Result<Option<ClusterConfig>> {
    let servers: Vec<String> = v
        .cluster
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
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
    if v.node_timeout == 0 {
        return Err(merge.error("node-timeout", "must be at least 1 second"));
    }
    if v.snapshot_every == 0 {
        return Err(merge.error("snapshot-every", "must be at least 1 event"));
    }
    Ok(Some(ClusterConfig {
        servers,
        node: v.node_id.unwrap_or(0),
        pick_node_id: v.node_id.is_none(),
        credentials: v.cluster_credentials.clone(),
        ca: v.cluster_ca.clone(),
        node_timeout: seconds(v.node_timeout),
        snapshot_every: v.snapshot_every,
    }))
}

/// The ban file's name, in the data directory.
pub const BAN_FILE: &str = "bans.toml";

/// The data directory, absolute: `--data-dir` (flag, variable or file) if given, else
/// the first of systemd's `$STATE_DIRECTORY` (set by `StateDirectory=`), else `data`
/// in the working directory (as Prometheus keeps `data/`): never the config file's
/// directory, which a service keeps read-only.
fn data_dir(given: Option<&Path>) -> PathBuf {
    let dir = given.map(Path::to_owned).unwrap_or_else(|| {
        std::env::var_os("STATE_DIRECTORY")
            .and_then(|dirs| std::env::split_paths(&dirs).find(|d| !d.as_os_str().is_empty()))
            .unwrap_or_else(|| PathBuf::from("data"))
    });
    std::path::absolute(&dir).unwrap_or(dir)
}

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

/// Builds [`Values`]: the merge of flags, variables, file and defaults, the declared
/// checks, and the comparison a reload makes.
macro_rules! values_struct {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $flag:ty | $file:ty, $reload:ident, $group:literal,
            [$($check:ident),*], $shown:literal, $example:literal, [$($arg:tt)*];
    )*) => {
        /// Every declared setting as merged, in the types clap parses.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Values {
            $(
                $(#[doc = $doc])*
                pub $name: $flag,
            )*
        }

        impl Values {
            /// Each setting from its flag or variable if given, else from the file if
            /// it sets it, else the default (a path from the file is relative to the
            /// file's directory).
            fn merge<'a>(
                cli: &Cli,
                matches: &'a ArgMatches,
                file: Option<&'a ConfigFile>,
            ) -> (Values, Merge<'a>) {
                let mut merge = Merge { file, from_file: Vec::new() };
                let values = Values {$(
                    $name: match file.and_then(|f| f.settings.$name.clone()) {
                        Some(value) if !given(matches, stringify!($name)) => {
                            merge.from_file.push(stringify!($name).replace('_', "-"));
                            FromFile::from_file(value, file)
                        }
                        _ => cli.$name.clone(),
                    },
                )*};
                (values, merge)
            }

            /// Runs every declared check on its setting.
            fn check(&self, merge: &Merge<'_>) -> anyhow::Result<()> {
                $($(
                    checks::$check(&self.$name)
                        .map_err(|problem| merge.error(&stringify!($name).replace('_', "-"), problem))?;
                )*)*
                Ok(())
            }

            /// The keys of the settings a reload cannot apply that differ from
            /// `running`'s.
            pub fn needing_restart(&self, running: &Values) -> Vec<String> {
                let mut keys = Vec::new();
                $(
                    if Reload::$reload == Reload::Restart && self.$name != running.$name {
                        keys.push(stringify!($name).replace('_', "-"));
                    }
                )*
                keys
            }
        }
    };
}

with_settings!(values_struct);

/// Whether the flag or its variable was given (not clap's default).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// A file's value in the type clap parses: wrapped in `Some` where the flag has no
/// default, a relative path taken from the file's directory.
trait FromFile<T> {
    fn from_file(value: T, file: Option<&ConfigFile>) -> Self;
}

/// Types whose file value is the flag value as it is.
macro_rules! same_in_file {
    ($($t:ty),*) => {$(
        impl FromFile<$t> for $t {
            fn from_file(value: $t, _: Option<&ConfigFile>) -> $t {
                value
            }
        }
    )*};
}

same_in_file!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    String,
    Vec<String>,
    IoMode,
    crate::config::HistoryCutoff,
    LogFormat
);

/// Types whose flag has no default: the file's value is `Some`.
macro_rules! optional_in_file {
    ($($t:ty),*) => {$(
        impl FromFile<$t> for Option<$t> {
            fn from_file(value: $t, _: Option<&ConfigFile>) -> Option<$t> {
                Some(value)
            }
        }
    )*};
}

optional_in_file!(String, u16, usize);

impl FromFile<Number> for f64 {
    fn from_file(value: Number, _: Option<&ConfigFile>) -> f64 {
        value.0
    }
}

impl FromFile<PathBuf> for Option<PathBuf> {
    fn from_file(path: PathBuf, file: Option<&ConfigFile>) -> Option<PathBuf> {
        Some(match file {
            Some(file) => file.resolve_path(&path),
            None => path,
        })
    }
}

/// Which settings came from the file, so an error can point at the file or at the
/// flag.
struct Merge<'a> {
    file: Option<&'a ConfigFile>,
    /// Keys (`max-channels`) whose value the file gave.
    from_file: Vec<String>,
}

impl Merge<'_> {
    /// An error about `key`: at its position in the file if the file set it, else
    /// about its flag.
    fn error(&self, key: &str, problem: impl Display) -> anyhow::Error {
        match self.file {
            Some(file) if self.from_file.iter().any(|k| k == key) => file.error_at(key, problem),
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

/// `--webirc`'s gateways, `CIDR=PASSWORD` each. The error never repeats a password.
fn parse_gateways(items: &[String]) -> Result<Vec<crate::config::WebircGateway>, String> {
    const FORM: &str = "takes CIDR=PASSWORD (e.g. 10.0.0.2/32=secret)";
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (network, password) = item.split_once('=').ok_or(FORM)?;
            let network = parse_networks(&[network.to_owned()])?.pop().ok_or(FORM)?;
            if password.is_empty() || password.contains(' ') {
                return Err(format!(
                    "the password for {network} must be non-empty, without spaces"
                ));
            }
            Ok(crate::config::WebircGateway {
                network,
                password: password.to_owned(),
            })
        })
        .collect()
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn read_motd(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read MOTD file {}: {error}", path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::declared::DECLARED;
    use super::*;
    use crate::live::LiveSettings;

    #[test]
    fn a_reload_applies_exactly_the_settings_declared_live() {
        let config = Config::default();
        let live = LiveSettings::new(&config);
        let second = Duration::from_secs(1);
        let every_live_one_changed = Config {
            motd: Some(vec!["changed".to_owned()]),
            max_clients: config.max_clients + 1,
            sendq: config.sendq + 1,
            recvq: config.recvq + 1,
            flood_burst: config.flood_burst + 1,
            flood_rate: config.flood_rate + 1.0,
            ping_interval: config.ping_interval + second,
            ping_timeout: config.ping_timeout + second,
            registration_timeout: config.registration_timeout + second,
            max_channels_per_client: config.max_channels_per_client + 1,
            ..config.clone()
        };
        let mut applied = live.apply(&every_live_one_changed);
        applied.sort_unstable();
        let mut declared: Vec<String> = DECLARED
            .iter()
            .filter(|setting| setting.reload == Reload::Live)
            .map(|setting| setting.key())
            .collect();
        declared.sort_unstable();
        assert_eq!(applied, declared);
    }

    #[test]
    fn a_reload_names_the_changed_settings_that_need_a_restart() {
        let running = Settings::defaults().values;
        let fresh = Values {
            server_name: "renamed.example".to_owned(),
            sendq: running.sendq * 2,
            tls_listen: vec!["127.0.0.1:6697".to_owned()],
            ..running.clone()
        };
        assert_eq!(
            fresh.needing_restart(&running),
            ["server-name", "tls-listen"]
        );
        assert!(running.needing_restart(&running).is_empty());
    }

    #[test]
    fn every_declared_setting_has_a_flag_and_a_key() {
        let command = cli::command();
        for setting in DECLARED {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == setting.name)
                .unwrap_or_else(|| panic!("{} has no flag", setting.name));
            assert_eq!(arg.get_long(), Some(setting.key().as_str()));
            let env = format!("RINGCHAT_{}", setting.name.to_uppercase());
            assert_eq!(
                arg.get_env().map(|env| env.to_string_lossy().into_owned()),
                Some(env),
                "{} has its own variable",
                setting.name
            );
            assert!(!setting.help.is_empty(), "{} has help", setting.name);
            let key = setting.key();
            let text = format!("{key} = {}\n", default_or_example(setting.name));
            ConfigFile::parse(Path::new("f.toml"), text)
                .unwrap_or_else(|error| panic!("{key} is a file key: {error}"));
        }
    }

    /// A value the file accepts for `name`: its example, else its TOML default.
    fn default_or_example(name: &str) -> String {
        let setting = DECLARED.iter().find(|s| s.name == name).expect("declared");
        if !setting.example.is_empty() {
            return setting.example.to_owned();
        }
        let example = docs::example_toml();
        example
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{} = ", setting.key())))
            .expect("the example sets it")
            .to_owned()
    }

    /// Loads `text` as the config file `name` (in a scratch directory) with `args`,
    /// as a start (`reload: false`) or a reload would.
    fn load_text(name: &str, text: &str, args: &[&str], reload: bool) -> anyhow::Result<Settings> {
        let dir = std::env::temp_dir().join(format!("ringchat-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write the config file");
        let matches = cli::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(std::iter::once("ringchat").chain(args.iter().copied()))
            .expect("the arguments parse");
        let cli = Cli::from_arg_matches(&matches).expect("the arguments fit Cli");
        if reload {
            Settings::reload(&cli, &matches, Some(&path))
        } else {
            Settings::load(&cli, &matches, Some(&path))
        }
    }

    fn error_of(name: &str, text: &str) -> String {
        let error = load_text(name, text, &[], false).expect_err("refused");
        let message = error.to_string();
        message
            .split_once(&format!("{name}:"))
            .map_or(message.clone(), |(_, rest)| rest.to_owned())
    }

    #[test]
    fn a_start_checks_the_files_the_settings_name() {
        assert_eq!(
            error_of("log.toml", "log-file = \"/nonexistent-dir/ringchat.log\"\n"),
            "1:1: log-file: /nonexistent-dir/ringchat.log: the directory /nonexistent-dir does not exist"
        );
        let text =
            "cluster = [\"nats://127.0.0.1:4222\"]\ncluster-credentials = \"/nonexistent.creds\"\n";
        assert!(
            error_of("creds.toml", text)
                .starts_with("2:1: cluster-credentials: cannot read /nonexistent.creds: "),
            "{}",
            error_of("creds.toml", text)
        );
        // Only a start opens those files: a reload leaves them to the next restart.
        let reloaded = load_text(
            "log.toml",
            "log-file = \"/nonexistent-dir/x.log\"\n",
            &[],
            true,
        );
        assert!(reloaded.is_ok(), "{reloaded:?}");
    }

    #[test]
    fn a_data_dir_that_cannot_be_created_is_refused_at_its_position() {
        assert_eq!(
            error_of("data.toml", "data-dir = \"/proc/version/state\"\n"),
            "1:1: data-dir: /proc/version/state: /proc/version is not a directory"
        );
        let settings = load_text("ok.toml", "data-dir = \"state\"\n", &[], false)
            .expect("a missing data directory is created at start");
        let dir = settings
            .config
            .data_dir
            .expect("a start has a data directory");
        assert!(dir.is_absolute() && dir.ends_with("state"), "{dir:?}");
        assert_eq!(settings.config.ban_file, Some(dir.join(BAN_FILE)));
    }

    #[test]
    fn a_value_of_the_wrong_type_or_range_names_the_value_and_what_is_allowed() {
        assert_eq!(
            error_of("fast.toml", "flood-rate = \"fast\"\n"),
            "1:14: flood-rate: invalid type: string \"fast\", expected a number (e.g. 5 or 0.5)"
        );
        assert_eq!(
            error_of("negative.toml", "flood-rate = -2\n"),
            "1:1: flood-rate: must be 0 (off) or a positive number of lines per second, not -2"
        );
        assert_eq!(
            error_of("full.toml", "max-clients = 0\n"),
            "1:1: max-clients: must be at least 1, not 0"
        );
    }

    #[test]
    fn webirc_gateways_read_as_cidr_and_password_and_errors_never_show_a_password() {
        let settings = load_text(
            "webirc.toml",
            "webirc = [\"10.0.0.2/32=s3cret\", \"2001:db8::/64=other\"]\n",
            &["--webirc", "192.0.2.1=flag"],
            false,
        )
        .expect("valid gateways");
        let gateways: Vec<_> = (settings.config.webirc.iter())
            .map(|gateway| (gateway.network.to_string(), gateway.password.as_str()))
            .collect();
        assert_eq!(
            gateways,
            [("192.0.2.1/32".to_owned(), "flag")],
            "the flag wins"
        );
        let settings = load_text(
            "file.toml",
            "webirc = [\"10.0.0.2/32=s3cret\"]\n",
            &[],
            false,
        )
        .expect("valid gateway");
        assert_eq!(settings.config.webirc[0].password, "s3cret");
        assert!(!format!("{:?}", settings.config).contains("s3cret"));
        assert_eq!(
            error_of("nopass.toml", "webirc = [\"10.0.0.2/32\"]\n"),
            "1:1: webirc: takes CIDR=PASSWORD (e.g. 10.0.0.2/32=secret)"
        );
        assert_eq!(
            error_of("badnet.toml", "webirc = [\"10.0.0/8=hidden\"]\n"),
            "1:1: webirc: `10.0.0/8` is not a network (e.g. 10.0.0.0/8)"
        );
        assert_eq!(
            error_of("space.toml", "webirc = [\"10.0.0.2/32=two words\"]\n"),
            "1:1: webirc: the password for 10.0.0.2/32 must be non-empty, without spaces"
        );
    }

    #[test]
    fn the_node_id_bound_is_the_layout_s() {
        let cluster = "cluster = [\"nats://127.0.0.1:4222\"]\nshards = 4\n";
        assert!(load_text("n59.toml", &format!("{cluster}node-id = 59\n"), &[], false).is_ok());
        assert_eq!(
            error_of("n60.toml", &format!("{cluster}node-id = 60\n")),
            "3:1: node-id: 60 with 4 shards must be below 60 (shards plus node numbers share 64 places)"
        );
    }

    #[test]
    fn the_help_shows_no_internal_path_and_the_node_id_bound() {
        let help = cli::command().render_long_help().to_string();
        assert!(!help.contains("crate::"), "{help}");
        assert!(
            help.contains("shards plus this number must stay below 64"),
            "{help}"
        );
        assert!(
            help.contains("[default: open-file limit less 64]"),
            "{help}"
        );
    }

    #[test]
    fn the_default_config_is_a_start_without_flags_or_file() {
        assert_eq!(Config::default(), Settings::defaults().config);
        assert_eq!(
            Config::default().listen,
            [SocketAddr::from(([0, 0, 0, 0], 6667))]
        );
        assert_eq!(Config::default().sources.connect_rate, 0.5);
    }
}
