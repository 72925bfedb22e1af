//! ringchat: a multi-client IRC chat server on io_uring.
//!
//! The map, in the order a message travels:
//! - [`io`]: drivers, the only code touching sockets: io_uring (tokio-uring) and epoll
//!   (tokio), running the same connection tasks, and `ring`, ringchat's own io_uring
//!   completion loop making the same shard calls; the TLS and WebSocket sessions every
//!   driver runs a connection's bytes through (WebSocket also serves the web client).
//! - [`proto`]: the wire format, pure: framing, parsing, serializing, names, numerics.
//! - [`shard`]: one core's sans-IO state: its clients, its members of each channel,
//!   its position in the event log (and so its version of the node's network replica,
//!   read without a lock), delivery and cross-shard hand-offs.
//! - [`commands`]: one file per command family, behind one table of metadata.
//! - [`state`]: what a connection owns (outbox, flood bucket) and what all shards share
//!   (the event log of network-state changes and the bus between shards).
//! - [`cluster`]: several servers as one network: the event log on a NATS JetStream
//!   stream, messages on core NATS to the nodes with recipients (every node, for a
//!   channel message kept in history).
//! - [`server`]: binding, shard threads, shutdown.
//! - Settings: [`config`] (what the server runs with: plain values, a leaf),
//!   [`settings`] (each setting declared once, and from that list the flags ([`cli`]),
//!   the TOML file ([`config_file`]), flags over file over defaults, the checks and the
//!   docs), [`live`] (what a reload changes), [`reload`] (SIGHUP).
//! - [`bans`]: one server ban as a value (the list is the network state's).
//! - [`cloak`]: the keyed hash others see instead of a user's address.
//! - Running it for real: [`logging`], [`metrics`] (Prometheus), [`systemd`],
//!   [`opers`] (operator accounts), [`ban_file`] (KLINEs and DLINEs across restarts),
//!   [`accounts`] (user accounts' rules: names, passwords, SASL PLAIN), [`scram`]
//!   (SASL SCRAM-SHA-256's keys, messages and proof check) and [`store`]
//!   (the embedded store in the data directory).
//! - [`tls`]: the certificate and key, their reload, client certificate fingerprints
//!   (driving a connection's TLS session is in [`io`]).
//! - [`upgrade`]: live upgrade: every plaintext connection handed to the binary now
//!   at the server's path, by a new process that receives the sockets.

pub mod accounts;
pub mod ban_file;
pub mod bans;
pub mod cloak;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod io;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod opers;
pub mod proto;
pub mod reload;
pub mod scram;
pub mod server;
pub mod settings;
pub mod shard;
pub mod state;
pub mod store;
pub mod systemd;
pub mod testing;
pub mod tls;
pub mod upgrade;

pub use config::{Config, HistoryCutoff, IoMode};
pub use server::Server;
pub use settings::{cli, config_file};
