//! What every shard shares: the configuration, the directory behind its lock, the
//! cross-shard bus and the published counters. Created once by the server, handed to
//! each shard as an `Arc`, dropped when the last shard thread ends.

use super::directory::Directory;
use crate::config::Config;
use crate::shard::handoff::Bus;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
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
    /// Clients dropped as slow consumers.
    sendq_disconnects,
    /// Clients dropped for flooding.
    flood_disconnects,
    /// TLS connections closed because their handshake failed.
    tls_handshake_failures,
}

/// State shared by all shards; see the module comment.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the server started with.
    pub config: Config,
    /// Nicknames, users, channels. Never held across an `.await`.
    directory: Mutex<Directory>,
    /// Cross-shard hand-offs.
    pub bus: Bus,
    /// One set of counters per shard.
    pub counters: Vec<ShardCounters>,
    /// Open connections on all shards, for `--max-clients`.
    pub connections: AtomicUsize,
    /// Set once shutdown has begun: shards stop accepting.
    pub shutting_down: AtomicBool,
    /// For RPL_CREATED.
    pub started: SystemTime,
}

impl Shared {
    /// Shared state for a server of `config.shards` shards.
    pub fn new(config: Config) -> Shared {
        let shards = config.shards;
        Shared {
            directory: Mutex::new(Directory::new(shards)),
            bus: Bus::new(shards),
            counters: (0..shards).map(|_| ShardCounters::default()).collect(),
            connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            started: SystemTime::now(),
            config,
        }
    }

    /// Locks the directory. A panic elsewhere while it was held leaves it usable: the
    /// directory's methods keep it consistent at every return.
    pub fn directory(&self) -> MutexGuard<'_, Directory> {
        self.directory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The sum of every shard's last published counters.
    pub fn totals(&self) -> CounterSnapshot {
        self.counters
            .iter()
            .map(ShardCounters::snapshot)
            .fold(CounterSnapshot::default(), CounterSnapshot::plus)
    }
}
