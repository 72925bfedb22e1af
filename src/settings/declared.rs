//! Every setting, declared once: its name (the flag is `--name` with dashes, the config
//! key the same), type in flags and in the file, reload class, group, checks, default
//! and help. It owns the list and nothing else: `with_settings!` hands the list to a
//! generator macro, and each generator builds one view of it where that view belongs:
//! the flags (`super::cli`), the file's keys (`super::config_file`), the merge, checks
//! and reload comparison (`super`), and the documentation (`super::docs`: the example
//! configuration file and the README's flags table, both checked by
//! `tests/settings_docs.rs`).
//!
//! One entry reads:
//!
//! ```text
//! /// Help text (--help, the example file, the README table).
//! name: FlagType | FileType, Live or Restart, "Group",
//!     [checks run on the merged value], "shown default", "example value",
//!     [clap arguments: env, default, value name, ...];
//! ```
//!
//! - `FlagType` is the type clap parses (`Option<T>` when there is no fixed default);
//!   `FileType` is the TOML key's type (`T` of an `Option<T>`).
//! - `Live`: a reload applies it (`crate::live` holds it); `Restart`: a reload that
//!   changes it logs that a restart is needed and leaves it.
//! - A check names a `fn(&FlagType) -> Result<(), String>` of `super::checks` that
//!   judges the value alone; its message names the value and what is allowed. Checks
//!   across settings and of the files settings name are `super::checks`' too.
//! - The shown default is what the documentation says when the default is computed
//!   (`""`: the clap default); the example value is the commented-out TOML value shown
//!   for a setting without a fixed default (`""`: none).
//!
//! Adding a setting: one entry here, and, if the server reads it, a field of
//! `crate::config::Config` and the line in `super::Settings::load` that fills it (plus
//! its accessor in `crate::live` if it is `Live`).

/// Calls `$generator! { ...every setting... }`; see the module comment.
macro_rules! with_settings {
    ($generator:ident) => {
        $generator! {
            // ---- Network ----
            /// Address to listen on (repeat for several; IPv4, IPv6 as `[::]:6667`, or a
            /// host name, which listens on every address it resolves to at start).
            /// Under socket activation the sockets systemd passes are used instead.
            listen: Vec<String> | Vec<String>, Restart, "Network", [], "", "",
                [env = "RINGCHAT_LISTEN", default_value = "0.0.0.0:6667",
                 value_delimiter = ',', value_name = "ADDR"];
            /// Server name shown as the source of server replies and in WHOIS (312).
            /// Left at its default, a cluster node puts `node<N>.` in front of it
            /// (`node1.ringchat.local`), so each node has its own.
            server_name: String | String, Restart, "Network", [], "", "",
                [env = "RINGCHAT_SERVER_NAME", default_value = crate::config::DEFAULT_SERVER_NAME,
                 value_name = "NAME"];
            /// Server description shown by WHOIS (312) and LINKS (364).
            server_info: String | String, Restart, "Network", [], "", "",
                [env = "RINGCHAT_SERVER_INFO", default_value = "ringchat IRC server",
                 value_name = "TEXT"];
            /// Network name (001 and ISUPPORT NETWORK=); a cluster's nodes share it.
            network: String | String, Restart, "Network", [], "", "",
                [env = "RINGCHAT_NETWORK", default_value = "ringchat", value_name = "NAME"];
            /// Require this connection password (PASS) from every client.
            password: Option<String> | String, Restart, "Network", [], "none", "\"secret\"",
                [env = "RINGCHAT_PASSWORD", hide_env_values = true, value_name = "PASSWORD"];

            // ---- What users see ----
            /// File whose lines form the message of the day (re-read on reload).
            motd: Option<std::path::PathBuf> | std::path::PathBuf, Live, "What users see", [],
                "none (422)", "\"motd.txt\"",
                [env = "RINGCHAT_MOTD", value_name = "FILE"];
            /// Refuse every command whose line is not valid UTF-8 (a FAIL reply with code
            /// INVALID_UTF8), and advertise UTF8ONLY.
            utf8_only: bool | bool, Restart, "What users see", [], "off", "",
                [env = "RINGCHAT_UTF8_ONLY"];

            /// Show every user's IP address to everyone, as older servers did, instead
            /// of a cloak (a keyed hash of the address, `k3vq7m2xa9pqe.ip`). The user
            /// and operators see the address in WHOIS (378) either way, and KLINEs match
            /// both.
            show_addresses: bool | bool, Restart, "What users see", [], "off (cloaked)", "",
                [env = "RINGCHAT_SHOW_ADDRESSES"];
            /// The secret that keys host cloaks: the same secret gives an address the
            /// same cloak, so every node of a cluster needs the same one. Without it the
            /// server generates one at its first start into `cloak.key` in the data
            /// directory (copy that file to a cluster's other nodes). Changing it
            /// changes every cloak, and so every channel ban set on one.
            cloak_secret: Option<String> | String, Restart, "What users see", [],
                "generated into data-dir/cloak.key", "\"a long random text\"",
                [env = "RINGCHAT_CLOAK_SECRET", hide_env_values = true, value_name = "SECRET"];

            /// Where the server is (city, country): ADMIN's 257 line.
            admin_location: Option<String> | String, Restart, "What users see", [], "none",
                "\"Amsterdam, NL\"",
                [env = "RINGCHAT_ADMIN_LOCATION", value_name = "TEXT"];
            /// Who runs the server (person or organisation): ADMIN's 258 line.
            admin_name: Option<String> | String, Restart, "What users see", [], "none",
                "\"Example Hosting\"",
                [env = "RINGCHAT_ADMIN_NAME", value_name = "TEXT"];
            /// How to reach its administrators: ADMIN's 259 line. Without any admin-*
            /// setting ADMIN answers 423 (no administrative info).
            admin_email: Option<String> | String, Restart, "What users see", [], "none",
                "\"irc-admin@example.org\"",
                [env = "RINGCHAT_ADMIN_EMAIL", value_name = "ADDRESS"];

            // ---- Limits ----
            /// Most simultaneous connections, registered or not; past it a new
            /// connection gets "ERROR :Server is full". Lowering it closes nobody.
            max_clients: Option<usize> | usize, Live, "Limits", [at_least_one],
                "open-file limit less 64", "10000",
                [env = "RINGCHAT_MAX_CLIENTS", value_name = "N"];
            /// Bytes queued for one client before it is disconnected ("SendQ exceeded").
            sendq: usize | usize, Live, "Limits", [], "", "",
                [env = "RINGCHAT_SENDQ", default_value_t = 1 << 20, value_name = "BYTES"];
            /// Bytes of unprocessed input held for one client before "Excess Flood".
            recvq: usize | usize, Live, "Limits", [], "", "",
                [env = "RINGCHAT_RECVQ", default_value_t = 8 << 10, value_name = "BYTES"];
            /// Lines a client may send at once before flood control delays it.
            flood_burst: u32 | u32, Live, "Limits", [], "", "",
                [env = "RINGCHAT_FLOOD_BURST", default_value_t = 20, value_name = "N"];
            /// Lines per second a client may send after the burst; 0 turns flood control
            /// off (benchmarks only).
            flood_rate: f64 | crate::settings::config_file::Number, Live, "Limits", [not_negative_rate],
                "", "",
                [env = "RINGCHAT_FLOOD_RATE", default_value_t = 5.0, value_name = "N"];
            /// Seconds of silence before the server sends PING.
            ping_interval: u64 | u64, Live, "Limits", [], "", "",
                [env = "RINGCHAT_PING_INTERVAL", default_value_t = 120, value_name = "S"];
            /// Seconds after that PING before a silent client is dropped ("Ping timeout").
            ping_timeout: u64 | u64, Live, "Limits", [], "", "",
                [env = "RINGCHAT_PING_TIMEOUT", default_value_t = 60, value_name = "S"];
            /// Seconds a new connection has to complete NICK/USER ("Registration timed
            /// out").
            registration_timeout: u64 | u64, Live, "Limits", [], "", "",
                [env = "RINGCHAT_REGISTRATION_TIMEOUT", default_value_t = 60,
                 value_name = "S"];
            /// Most channels one client may be in (CHANLIMIT); past it 405. Lowering it
            /// parts nobody.
            max_channels: usize | usize, Live, "Limits", [], "", "",
                [env = "RINGCHAT_MAX_CHANNELS", default_value_t = 50, value_name = "N"];

            // ---- TLS ----
            /// Address to listen on with TLS (repeat for several), e.g. 0.0.0.0:6697;
            /// needs --tls-cert and --tls-key.
            tls_listen: Vec<String> | Vec<String>, Restart, "TLS", [], "none",
                "[\"0.0.0.0:6697\"]",
                [env = "RINGCHAT_TLS_LISTEN", value_delimiter = ',', value_name = "ADDR"];
            /// TLS certificate chain, PEM, leaf first. A reload re-reads it: new
            /// handshakes use it, existing connections continue, a bad file keeps the
            /// old one.
            tls_cert: Option<std::path::PathBuf> | std::path::PathBuf, Restart, "TLS", [],
                "none", "\"/etc/ringchat/fullchain.pem\"",
                [env = "RINGCHAT_TLS_CERT", value_name = "FILE"];
            /// TLS private key (PKCS#8, PKCS#1 or SEC1 PEM); re-read with the certificate.
            tls_key: Option<std::path::PathBuf> | std::path::PathBuf, Restart, "TLS", [],
                "none", "\"/etc/ringchat/privkey.pem\"",
                [env = "RINGCHAT_TLS_KEY", value_name = "FILE"];
            /// Advertise IRCv3 STS: send plaintext clients that understand `sts` to this
            /// TLS port.
            sts_port: Option<u16> | u16, Restart, "TLS", [], "off", "6697",
                [env = "RINGCHAT_STS_PORT", value_name = "PORT"];
            /// Seconds an STS client keeps to TLS after seeing the policy (with
            /// --sts-port).
            sts_duration: u64 | u64, Restart, "TLS", [], "", "",
                [env = "RINGCHAT_STS_DURATION", default_value_t = 86_400, value_name = "S"];

            // ---- WebSocket ----
            /// Address to serve IRC over WebSocket on, plain HTTP (repeat for several),
            /// e.g. 0.0.0.0:8097; a plain GET there gets the web client.
            websocket_listen: Vec<String> | Vec<String>, Restart, "WebSocket", [], "none",
                "[\"0.0.0.0:8097\"]",
                [env = "RINGCHAT_WEBSOCKET_LISTEN", value_delimiter = ',', value_name = "ADDR"];
            /// Address to serve IRC over WebSocket on with TLS (wss://), with the
            /// certificate of --tls-cert and --tls-key (and its reload).
            websocket_tls_listen: Vec<String> | Vec<String>, Restart, "WebSocket", [], "none",
                "[\"0.0.0.0:8098\"]",
                [env = "RINGCHAT_WEBSOCKET_TLS_LISTEN", value_delimiter = ',',
                 value_name = "ADDR"];
            /// Web pages allowed to open a WebSocket (their `Origin`, e.g.
            /// https://chat.example.org; repeat for several). Unset: any page. A client
            /// that sends no Origin (not a browser) is always let in.
            websocket_origins: Vec<String> | Vec<String>, Restart, "WebSocket", [], "any",
                "[\"https://chat.example.org\"]",
                [env = "RINGCHAT_WEBSOCKET_ORIGINS", value_delimiter = ',',
                 value_name = "ORIGIN"];
            /// Reverse proxies (CIDRs) whose X-Forwarded-For or Forwarded header names
            /// the real client on a WebSocket listener; bans and per-source limits then
            /// apply to that address. Unset: the headers are ignored.
            websocket_proxies: Vec<String> | Vec<String>, Restart, "WebSocket", [], "none",
                "[\"127.0.0.1/32\"]",
                [env = "RINGCHAT_WEBSOCKET_PROXIES", value_delimiter = ',',
                 value_name = "CIDR"];
            /// Web gateways (Kiwi IRC, gamja, any IRCv3 WebIRC gateway) trusted to name
            /// the user behind each connection, as CIDR=PASSWORD (repeat for several;
            /// the password has no comma or space): a connection from that network that
            /// sends `WEBIRC PASSWORD ...` first takes the address it names, and bans,
            /// per-source limits and the cloak apply to that address. Unset: WEBIRC is
            /// refused.
            webirc: Vec<String> | Vec<String>, Restart, "WebSocket", [], "none",
                "[\"10.0.0.2/32=a-long-random-password\"]",
                [env = "RINGCHAT_WEBIRC", hide_env_values = true, value_delimiter = ',',
                 value_name = "CIDR=PASSWORD"];

            // ---- Hostile clients ----
            /// Seconds queued output may make no progress (the peer stopped reading)
            /// before the connection is closed ("Write timeout"), or, if it was already
            /// closing, reset.
            write_timeout: u64 | u64, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_WRITE_TIMEOUT", default_value_t = 30, value_name = "S"];
            /// Seconds a user may keep a registered nick without logging in to its
            /// account before it is renamed to Guest-<n> (NickServ warns at once); 0:
            /// strict, changing to such a nick is refused (433) and a connection that
            /// registers with one is renamed at once.
            nick_grace: u64 | u64, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_NICK_GRACE", default_value_t = 30, value_name = "S"];
            /// Shortest password an account may have (REGISTER, NickServ REGISTER and
            /// SET PASSWORD refuse shorter ones as weak).
            min_password_len: usize | usize, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_MIN_PASSWORD_LEN", default_value_t = 8, value_name = "N"];
            /// Most connections open at once from one source (an IPv4 address, or an
            /// IPv6 prefix of --ipv6-source-prefix bits).
            max_per_source: u32 | u32, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_MAX_PER_SOURCE", default_value_t = 16, value_name = "N"];
            /// Connections one source may open at once before its connect rate applies.
            source_connect_burst: u32 | u32, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_SOURCE_CONNECT_BURST", default_value_t = 16,
                 value_name = "N"];
            /// Connections per second one source may open after the burst.
            source_connect_rate: f64 | crate::settings::config_file::Number, Restart,
                "Hostile clients", [], "", "",
                [env = "RINGCHAT_SOURCE_CONNECT_RATE", default_value_t = 0.5,
                 value_name = "R"];
            /// Most unregistered connections from one source.
            max_unregistered_per_source: u32 | u32, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_MAX_UNREGISTERED_PER_SOURCE", default_value_t = 8,
                 value_name = "N"];
            /// Most unregistered connections from all sources together.
            max_unregistered: usize | usize, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_MAX_UNREGISTERED", default_value_t = 4096,
                 value_name = "N"];
            /// Networks exempt from the per-source limits, not from --max-unregistered
            /// (comma list of CIDRs; '' or [] for none). Loopback by default, so
            /// benchmarks on one machine keep working.
            exempt: Vec<String> | Vec<String>, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_EXEMPT", value_delimiter = ',',
                 default_value = "127.0.0.0/8,::1/128", value_name = "CIDR"];
            /// Prefix length that makes one IPv6 source (a /64 is one host's addresses).
            ipv6_source_prefix: u8 | u8, Restart, "Hostile clients", [], "", "",
                [env = "RINGCHAT_IPV6_SOURCE_PREFIX", default_value_t = 64,
                 value_name = "N"];

            // ---- Process ----
            /// Seconds a graceful shutdown (SIGTERM, SIGINT) waits for queued output to
            /// flush.
            shutdown_timeout: u64 | u64, Restart, "Process", [], "", "",
                [env = "RINGCHAT_SHUTDOWN_TIMEOUT", default_value_t = 5, value_name = "S"];
            /// Runtimes (threads), one per core, 1 to 64.
            shards: Option<usize> | usize, Restart, "Process", [], "available cores", "4",
                [env = "RINGCHAT_SHARDS", value_name = "N"];
            /// I/O driver: "ring" (ringchat's own io_uring loop), "uring" (io_uring
            /// through tokio-uring), "epoll", or "auto" (ring, then uring, then epoll,
            /// with one warning per fallback; every driver serves TLS listeners).
            io: crate::config::IoMode | crate::config::IoMode, Restart, "Process", [], "", "",
                [env = "RINGCHAT_IO", value_enum, default_value = "auto"];

            /// The server's one place for state: the bans it keeps across restarts
            /// (`bans.toml`), and later accounts and history. Created at start if
            /// missing; never the config file's directory, which may be read-only (a
            /// `bans.toml` found there is read once and moved here). A relative path in
            /// the file is relative to the file's directory, on the command line to the
            /// working directory.
            data_dir: Option<std::path::PathBuf> | std::path::PathBuf, Restart, "Process", [],
                "$STATE_DIRECTORY if systemd sets it, else ./data", "\"/var/lib/ringchat\"",
                [env = "RINGCHAT_DATA_DIR", value_name = "DIR"];

            // ---- Operations ----
            /// Log format (filter with RUST_LOG, e.g. RUST_LOG=ringchat=debug).
            log_format: crate::logging::LogFormat | crate::logging::LogFormat, Restart,
                "Operations", [], "", "",
                [env = "RINGCHAT_LOG_FORMAT", value_enum, default_value = "text"];
            /// Append logs to this file instead of stderr; a reload reopens it
            /// (logrotate). Its directory must exist.
            log_file: Option<std::path::PathBuf> | std::path::PathBuf, Restart, "Operations",
                [], "stderr", "\"/var/log/ringchat/ringchat.log\"",
                [env = "RINGCHAT_LOG_FILE", value_name = "FILE"];
            /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100).
            metrics: Option<String> | String, Restart, "Operations", [], "off",
                "\"127.0.0.1:9100\"",
                [env = "RINGCHAT_METRICS", value_name = "ADDR"];

            /// Most of the connected users, in percent, that one KLINE or DLINE may hit
            /// unless the operator confirms it (`KLINE FORCE ...`): a wider one is
            /// refused with how many it would hit. A ban that would hit its own
            /// operator always needs FORCE; one that hits a single user never does.
            max_ban_share: u8 | u8, Restart, "Operations", [percent], "", "",
                [env = "RINGCHAT_MAX_BAN_SHARE", default_value_t = 10, value_name = "PERCENT"];
            /// Messages and events kept per channel (and per direct conversation) for
            /// CHATHISTORY, in the data directory's store; past it the oldest go
            /// first. 0 keeps none and does not offer CHATHISTORY.
            history_max_messages: u64 | u64, Restart, "Operations", [], "", "",
                [env = "RINGCHAT_HISTORY_MAX_MESSAGES", default_value_t = 10_000,
                 value_name = "N"];
            /// Days a message is kept for CHATHISTORY; older ones are no longer shown
            /// and are deleted as the store writes.
            history_max_days: u64 | u64, Restart, "Operations", [], "", "",
                [env = "RINGCHAT_HISTORY_MAX_DAYS", default_value_t = 30, value_name = "DAYS"];
            /// How far back a member reads a secret (+s) or invite-only (+i)
            /// channel's history: "join" (since the member's last JOIN),
            /// "registration" (since its connection signed on) or "none" (all that
            /// is kept, as in other channels).
            history_private_cutoff: crate::config::HistoryCutoff | crate::config::HistoryCutoff,
                Restart, "Operations", [], "", "",
                [env = "RINGCHAT_HISTORY_PRIVATE_CUTOFF", value_enum, default_value = "join"];

            // ---- Cluster ----
            /// Join a cluster through these NATS servers (comma list of
            /// nats://HOST:PORT, JetStream enabled); the cluster is the one named by
            /// --network, which every node of it must share.
            cluster: Vec<String> | Vec<String>, Restart, "Cluster", [], "none (run alone)",
                "[\"nats://127.0.0.1:4222\"]",
                [env = "RINGCHAT_CLUSTER", value_delimiter = ',', value_name = "URLS"];
            /// This node's number, unique among the cluster's nodes; shards plus this
            /// number must stay below 64. Without it the node takes the lowest number
            /// that no live node holds.
            node_id: Option<u16> | u16, Restart, "Cluster", [],
                "the lowest free number", "0",
                [env = "RINGCHAT_NODE_ID", value_name = "N"];
            /// NATS credentials file (.creds: JWT and NKey seed) for the cluster
            /// connection.
            cluster_credentials: Option<std::path::PathBuf> | std::path::PathBuf, Restart,
                "Cluster", [], "none", "\"/etc/ringchat/nats.creds\"",
                [env = "RINGCHAT_CLUSTER_CREDENTIALS", value_name = "FILE"];
            /// PEM file of CA certificates that the NATS servers' TLS certificates must
            /// chain to; TLS is then required on the cluster connection.
            cluster_ca: Option<std::path::PathBuf> | std::path::PathBuf, Restart, "Cluster",
                [], "none", "\"/etc/ringchat/nats-ca.pem\"",
                [env = "RINGCHAT_CLUSTER_CA", value_name = "FILE"];
            /// Seconds without a heartbeat after which another node is declared lost and
            /// its users quit ("Node lost").
            node_timeout: u64 | u64, Restart, "Cluster", [], "", "",
                [env = "RINGCHAT_NODE_TIMEOUT", default_value_t = 5, value_name = "S"];
            /// Events between two snapshots of the network state, which new and
            /// restarted nodes load before replaying the events after them.
            snapshot_every: u64 | u64, Restart, "Cluster", [], "", "",
                [env = "RINGCHAT_SNAPSHOT_EVERY", default_value_t = 10_000, value_name = "N"];
        }
    };
}

pub(crate) use with_settings;

/// Whether a reload applies a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A reload applies it to every client, connected or not (`crate::live`).
    Live,
    /// A reload that changes it logs that a restart is needed and leaves it.
    Restart,
}

/// What the documentation needs of one declared setting.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// The field name (`max_channels`); the key and flag are [`Declared::key`].
    pub name: &'static str,
    /// Whether a reload applies it.
    pub reload: Reload,
    /// The section it is listed under.
    pub group: &'static str,
    /// The help text, one doc-comment line per item.
    pub help: &'static [&'static str],
    /// The default as the documentation says it when it is computed; empty: the
    /// clap default.
    pub shown: &'static str,
    /// A TOML value to show, commented out, when there is no fixed default.
    pub example: &'static str,
}

impl Declared {
    /// The config-file key and, after `--`, the flag: `max-channels`.
    pub fn key(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The help text as one paragraph.
    pub fn help_text(&self) -> String {
        self.help
            .iter()
            .map(|line| line.trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Builds [`DECLARED`].
macro_rules! declared_table {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $flag:ty | $file:ty, $reload:ident, $group:literal,
            [$($check:ident),*], $shown:literal, $example:literal, [$($arg:tt)*];
    )*) => {
        /// Every declared setting, in declaration order.
        pub const DECLARED: &[Declared] = &[$(
            Declared {
                name: stringify!($name),
                reload: Reload::$reload,
                group: $group,
                help: &[$($doc),*],
                shown: $shown,
                example: $example,
            },
        )*];
    };
}

with_settings!(declared_table);
