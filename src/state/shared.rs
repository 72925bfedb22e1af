//! What every shard shares: the configuration, the directory behind its lock, the
//! cross-shard bus and the published counters. Created once by the server, handed to
//! each shard as an `Arc`, dropped when the last shard thread ends.

use super::directory::Directory;
use crate::config::Config;
use crate::shard::handoff::Bus;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// Counters a shard publishes once a second (and at shutdown), so they can be read
/// without stopping it. The shard counts locally; no atomic is touched per message.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Connections currently open on the shard.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Lines read from clients.
    pub lines_in: AtomicU64,
    /// Lines queued for delivery to clients.
    pub deliveries: AtomicU64,
    /// Bytes the kernel accepted for sending.
    pub bytes_out: AtomicU64,
    /// Clients dropped as slow consumers.
    pub sendq_disconnects: AtomicU64,
    /// Clients dropped for flooding.
    pub flood_disconnects: AtomicU64,
}

/// A point-in-time copy of [`ShardCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// See [`ShardCounters::connections`].
    pub connections: u64,
    /// See [`ShardCounters::accepted`].
    pub accepted: u64,
    /// See [`ShardCounters::lines_in`].
    pub lines_in: u64,
    /// See [`ShardCounters::deliveries`].
    pub deliveries: u64,
    /// See [`ShardCounters::bytes_out`].
    pub bytes_out: u64,
    /// See [`ShardCounters::sendq_disconnects`].
    pub sendq_disconnects: u64,
    /// See [`ShardCounters::flood_disconnects`].
    pub flood_disconnects: u64,
}

impl ShardCounters {
    /// Publishes a shard's local counts.
    pub fn publish(&self, counts: &CounterSnapshot) {
        let store = |cell: &AtomicU64, value| cell.store(value, Ordering::Relaxed);
        store(&self.connections, counts.connections);
        store(&self.accepted, counts.accepted);
        store(&self.lines_in, counts.lines_in);
        store(&self.deliveries, counts.deliveries);
        store(&self.bytes_out, counts.bytes_out);
        store(&self.sendq_disconnects, counts.sendq_disconnects);
        store(&self.flood_disconnects, counts.flood_disconnects);
    }

    /// Reads the last published counts.
    pub fn snapshot(&self) -> CounterSnapshot {
        let load = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        CounterSnapshot {
            connections: load(&self.connections),
            accepted: load(&self.accepted),
            lines_in: load(&self.lines_in),
            deliveries: load(&self.deliveries),
            bytes_out: load(&self.bytes_out),
            sendq_disconnects: load(&self.sendq_disconnects),
            flood_disconnects: load(&self.flood_disconnects),
        }
    }
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
        self.counters.iter().map(ShardCounters::snapshot).fold(
            CounterSnapshot::default(),
            |sum, c| CounterSnapshot {
                connections: sum.connections + c.connections,
                accepted: sum.accepted + c.accepted,
                lines_in: sum.lines_in + c.lines_in,
                deliveries: sum.deliveries + c.deliveries,
                bytes_out: sum.bytes_out + c.bytes_out,
                sendq_disconnects: sum.sendq_disconnects + c.sendq_disconnects,
                flood_disconnects: sum.flood_disconnects + c.flood_disconnects,
            },
        )
    }
}
