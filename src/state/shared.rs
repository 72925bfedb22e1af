//! What every shard shares: the configuration, the event log (the one order of
//! network-state changes), the cross-shard bus and the published counters. Created
//! once by the server, handed to each shard as an `Arc`, dropped when the last shard
//! thread ends. Nothing here is locked on the message path: the log's appends are the
//! only lock, and only state changes take it.

use super::auth_throttle::AuthThrottle;
use super::bus::Bus;
use super::cluster::ClusterState;
use super::deferred::Mailboxes;
use super::log::{EventLog, LogReader};
use super::network::{Account, Layout, Network};
use super::offload::Offload;
use super::rehash::Rehash;
use super::sources::Sources;
use crate::ban_file::BanStore;
use crate::config::Config;
use crate::live::LiveSettings;
use crate::proto::CaselessKey;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Declares the per-shard counters once: the plain snapshot a shard counts into
/// locally, and the atomic copy it publishes for readers on other threads.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A shard's counts. The shard counts into its own copy (no atomic per
        /// message) and publishes it about once a second and at shutdown.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct CounterSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl CounterSnapshot {
            /// The sum of two snapshots (server totals).
            pub fn plus(self, other: CounterSnapshot) -> CounterSnapshot {
                CounterSnapshot { $($name: self.$name + other.$name,)* }
            }
        }

        /// The published copy of a shard's [`CounterSnapshot`].
        #[derive(Debug, Default)]
        pub struct ShardCounters {
            $($name: AtomicU64,)*
        }

        impl ShardCounters {
            /// Publishes a shard's local counts.
            pub fn publish(&self, counts: &CounterSnapshot) {
                $(self.$name.store(counts.$name, Ordering::Relaxed);)*
            }

            /// Reads the last published counts.
            pub fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Connections currently open on the shard.
    connections,
    /// Connections accepted since start.
    accepted,
    /// Lines read from clients.
    lines_in,
    /// Lines queued for delivery to clients.
    deliveries,
    /// Bytes the kernel accepted for sending.
    bytes_out,
    /// Read operations completed (io_uring: read SQEs; epoll: read syscalls that
    /// returned data or end of stream).
    reads,
    /// Vectored writes completed (io_uring: writev SQEs; epoll: writev syscalls).
    writes,
    /// `io_uring_enter` calls made by the `ring` driver (one submit-and-wait per loop
    /// turn, plus one per full submission queue); 0 on the other drivers, whose
    /// runtimes enter the kernel out of ringchat's sight.
    enters,
    /// Multishot receives the `ring` driver re-armed because its provided-buffer ring
    /// was empty (`ENOBUFS`: the data waited in the socket; nothing is lost).
    receive_buffer_waits,
    /// Clients dropped as slow consumers.
    sendq_disconnects,
    /// Clients dropped for flooding.
    flood_disconnects,
    /// Connections reset because their output made no progress for `--write-timeout`.
    write_timeouts,
    /// Connections refused: `--max-clients` reached.
    refused_full,
    /// Connections refused: the source held `--max-per-source` connections.
    refused_per_source,
    /// Connections refused: the source connected faster than its rate.
    refused_too_fast,
    /// Connections refused: too many unregistered connections (per source or in all).
    refused_unregistered,
    /// Connections refused: a DLINE covers the address.
    refused_banned,
    /// Events this shard proposed (appends to the event log: the only lock on network
    /// state, never taken by a channel message).
    events_proposed,
    /// Events this shard took in (every shard takes in every event, applied once per
    /// node).
    events_applied,
    /// Hand-off batches sent to other shards: the cross-core synchronizations of the
    /// message path, at most one per destination per scheduler pass.
    handoff_batches,
    /// TLS connections closed because their handshake failed.
    tls_handshake_failures,
    /// Logins to an account that succeeded (SASL, IDENTIFY, PASS, REGISTER).
    logins,
    /// Logins refused: a wrong password, an unknown account, an unlisted certificate.
    login_failures,
    /// AUTHENTICATE input refused before any check: malformed, oversize, an unknown
    /// mechanism.
    sasl_malformed,
    /// Password checks and hashes refused because the offload workers' queue was
    /// full.
    auth_busy,
}

/// State shared by all shards; see the module comment.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the server started with.
    pub config: Config,
    /// The MOTD and limits as of the last reload; read these, not `config`, for them.
    pub live: LiveSettings,
    /// The total order of network-state changes, and the writer of the node's one
    /// replica of the network state, which every shard reads at its own position.
    pub log: EventLog,
    /// Each shard's reader of the log, taken once by the shard when it is built.
    log_readers: Mutex<Vec<Option<LogReader>>>,
    /// Cross-shard hand-offs and wake-ups (and, on a cluster node, the cluster link's
    /// endpoint after the shards').
    pub bus: Arc<Bus>,
    /// Replies built off the shards (CHATHISTORY, by the store's writer), one
    /// mailbox per shard.
    pub deferred: Mailboxes,
    /// The cluster link's side, on a cluster node.
    pub cluster: Option<ClusterState>,
    /// One set of counters per shard.
    pub counters: Vec<ShardCounters>,
    /// Per-source connection limits, checked at accept and registration.
    pub sources: Sources,
    /// Open connections on all shards, for `--max-clients`.
    pub connections: AtomicUsize,
    /// Set once shutdown has begun: shards stop accepting connections and input.
    pub shutting_down: AtomicBool,
    /// Shards that have sent every hand-off they will ever send (shutdown): once all
    /// have, each shard takes in the last of them before closing its clients.
    pub handoffs_sealed: AtomicUsize,
    /// Where the shards meet to stop for a live upgrade ([`crate::upgrade`]).
    pub freeze: crate::state::freeze::Freeze,
    /// UPGRADE from an operator, taken up by the process's main loop as SIGUSR2 is.
    /// (The same mechanism as REHASH's, answered the same way.)
    pub upgrade_requests: Rehash,
    /// REHASH from an operator: the process's main loop (which owns the command line
    /// and reloads on SIGHUP) takes the request up and leaves the outcome for the
    /// operator's shard to deliver.
    pub rehash: Rehash,
    /// Password hashing and verification, and waits for the store, off the shard
    /// threads; finished work comes back to the client's shard.
    pub offload: Arc<Offload>,
    /// Registrations per source and failed logins per account, bounded.
    pub auth_throttle: AuthThrottle,
    /// Where KLINEs and DLINEs are written when they change.
    pub ban_store: BanStore,
    /// The node's embedded store in the data directory; `None` when the server
    /// keeps nothing across restarts (no data directory: tests, benchmarks).
    pub store: Option<Store>,
    /// What keys host cloaks; `None` when others see real addresses
    /// (`--show-addresses`). Set by the server at start, before any shard runs.
    pub cloak: Option<crate::cloak::Cloak>,
    /// For RPL_CREATED.
    pub started: SystemTime,
    /// The most users this node has served at once (265's max), raised by LUSERS,
    /// which every registration sends.
    pub local_peak: AtomicUsize,
    /// Registered users and channels as the last shard to publish saw them (in the
    /// version it read), for readers off the shards such as metrics.
    users: AtomicUsize,
    channels: AtomicUsize,
    /// Server operators, published the same way.
    opers: AtomicUsize,
}

impl Shared {
    /// Shared state for a standalone server of `config.shards` shards.
    pub fn new(config: Config) -> Shared {
        Shared::with_accounts(config, Vec::new(), Vec::new())
    }

    /// Shared state for a standalone server whose network starts with `accounts`
    /// and their `read_markers` (`(account, target, Unix milliseconds)`), read from
    /// its store.
    pub fn with_accounts(
        config: Config,
        accounts: Vec<Account>,
        read_markers: Vec<(CaselessKey, CaselessKey, u64)>,
    ) -> Shared {
        let network = Network::with_server_bans(
            Layout::standalone(config.shards),
            config.server_bans.clone(),
        )
        .with_accounts(accounts)
        .with_read_markers(read_markers);
        Shared::starting_from(config, network)
    }

    /// Shared state whose shards start from `network` (a cluster node's snapshot, or
    /// an empty one) and continue the log after the entry it applied last. On a
    /// cluster node (`config.cluster`), the bus gets one more endpoint: the link.
    pub fn starting_from(config: Config, network: Network) -> Shared {
        let shards = config.shards;
        let (log, readers) = EventLog::starting_from(network, shards);
        let cluster = config
            .cluster
            .as_ref()
            .map(|cluster| ClusterState::new(cluster.node, shards as u16));
        let endpoints = shards + usize::from(cluster.is_some());
        let bus = Arc::new(Bus::new(endpoints));
        Shared {
            log,
            log_readers: Mutex::new(readers.into_iter().map(Some).collect()),
            deferred: Mailboxes::new(shards, bus.clone()),
            bus,
            cluster,
            sources: Sources::new(config.sources.clone()),
            counters: (0..shards).map(|_| ShardCounters::default()).collect(),
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            handoffs_sealed: AtomicUsize::new(0),
            rehash: Rehash::default(),
            freeze: Default::default(),
            upgrade_requests: Default::default(),
            offload: Arc::new(Offload::new(shards)),
            auth_throttle: AuthThrottle::default(),
            ban_store: BanStore::new(config.ban_file.clone(), config.server_bans.clone()),
            store: None,
            cloak: None,
            local_peak: AtomicUsize::new(0),
            started: SystemTime::now(),
            users: AtomicUsize::new(0),
            channels: AtomicUsize::new(0),
            opers: AtomicUsize::new(0),
            live: LiveSettings::new(&config),
            config,
        }
    }

    /// Begins a graceful shutdown (signals, DIE): shards stop accepting connections
    /// and input, deliver what they accepted, and close every client. Idempotent.
    pub fn begin_shutdown(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.leaving.store(true, Ordering::Release);
        }
        if !self.shutting_down.swap(true, Ordering::AcqRel) {
            self.bus.wake_all();
        }
    }

    /// Whether channel messages are kept for CHATHISTORY: with a store, unless
    /// `history-max-messages` is 0.
    pub fn keeps_history(&self) -> bool {
        self.store.is_some() && self.config.history_max_messages > 0
    }

    /// This node's number in its cluster (0 when alone).
    pub fn node(&self) -> u16 {
        self.cluster.as_ref().map_or(0, |cluster| cluster.node)
    }

    /// Shard `shard`'s reader of the event log; `None` if it was taken already.
    pub fn take_log_reader(&self, shard: u16) -> Option<LogReader> {
        self.log_readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_mut(shard as usize)?
            .take()
    }

    /// Publishes a replica's user, channel and operator counts.
    pub fn publish_population(&self, users: usize, channels: usize, opers: usize) {
        self.users.store(users, Ordering::Relaxed);
        self.channels.store(channels, Ordering::Relaxed);
        self.opers.store(opers, Ordering::Relaxed);
    }

    /// Registered users, channels and server operators, as last published (about
    /// once a second).
    pub fn population(&self) -> (usize, usize, usize) {
        (
            self.users.load(Ordering::Relaxed),
            self.channels.load(Ordering::Relaxed),
            self.opers.load(Ordering::Relaxed),
        )
    }

    /// The sum of every shard's last published counters.
    pub fn totals(&self) -> CounterSnapshot {
        self.counters
            .iter()
            .map(ShardCounters::snapshot)
            .fold(CounterSnapshot::default(), CounterSnapshot::plus)
    }
}
