//! What a cluster node's shards share with its cluster link (`crate::cluster`): the
//! link's place on the bus, whether the cluster can be reached, and the link's
//! counters. Absent when the server runs alone.

use crate::state::network::ShardSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::Thread;

/// Shared between the shards and the cluster link; see the module comment.
#[derive(Debug)]
pub struct ClusterState {
    /// This node's number.
    pub node: u16,
    /// The cluster link's endpoint on the bus (one past the last shard).
    pub endpoint: u16,
    /// Whether the link holds a NATS connection: while it does not, shards refuse
    /// state changes (they could not be ordered) instead of diverging.
    connected: AtomicBool,
    /// Set when this node leaves (shutdown): one `NodeLost` event quits all of its
    /// users, so closing each client proposes nothing.
    pub leaving: AtomicBool,
    /// Shard threads waiting for their proposal to come back, unparked whenever the
    /// link appends to the log.
    waiting: Mutex<Vec<Thread>>,
    /// The link's figures, for STATS and metrics.
    pub counters: LinkCounters,
    /// The other nodes this node hears from (a [`ShardSet`] of node numbers, as
    /// bits): where a channel message kept in history goes, so that every node keeps
    /// it. Written by the link when a node is first heard from or declared lost; read
    /// with one load per such message.
    live_nodes: AtomicU64,
    /// Other nodes' server names, as their heartbeats say them (WHOIS 312 of a
    /// user on another node). Written by the link a few times a second, read by a
    /// WHOIS: never on the message path.
    server_names: Mutex<std::collections::HashMap<u16, std::sync::Arc<str>>>,
}

/// The cluster link's counters (all since start).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Events appended to this node's log from the cluster's stream.
    pub events_in: AtomicU64,
    /// Events this node published to the stream.
    pub events_out: AtomicU64,
    /// The stream's last sequence number as last seen, and the last one applied: their
    /// difference is the log lag.
    pub stream_last: AtomicU64,
    /// See `stream_last`.
    pub stream_applied: AtomicU64,
    /// Cross-node messages received and forwarded to local shards.
    pub messages_in: AtomicU64,
    /// Cross-node messages published (one per destination node).
    pub messages_out: AtomicU64,
    /// Events from other nodes: microseconds from publication to being appended
    /// here, summed, and how many (the mean apply lag); the link logs percentiles.
    pub lag_micros_sum: AtomicU64,
    /// See `lag_micros_sum`.
    pub lag_samples: AtomicU64,
    /// The apply lag's median and 99th percentile since start, in microseconds,
    /// refreshed about once a second.
    pub lag_p50_micros: AtomicU64,
    /// See `lag_p50_micros`.
    pub lag_p99_micros: AtomicU64,
    /// Nodes of the cluster this node hears from (itself included), refreshed about
    /// once a second.
    pub nodes_alive: AtomicU64,
    /// Nodes declared lost by this node.
    pub nodes_lost: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
}

impl ClusterState {
    /// The state of node `node`, whose link is bus endpoint `endpoint`; not yet
    /// connected.
    pub fn new(node: u16, endpoint: u16) -> ClusterState {
        ClusterState {
            node,
            endpoint,
            connected: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
            counters: LinkCounters::default(),
            server_names: Mutex::default(),
            live_nodes: AtomicU64::new(0),
        }
    }

    /// Whether the cluster can order proposals now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Records the link's connection state; returns the previous one.
    pub fn set_connected(&self, connected: bool) -> bool {
        self.connected.swap(connected, Ordering::AcqRel)
    }

    /// The other nodes this node hears from.
    pub fn live_nodes(&self) -> ShardSet {
        ShardSet::from_bits(self.live_nodes.load(Ordering::Acquire))
    }

    /// Records the other nodes this node hears from (the link).
    pub fn set_live_nodes(&self, nodes: ShardSet) {
        self.live_nodes.store(nodes.bits(), Ordering::Release);
    }

    /// Records node `node`'s server name from its heartbeat.
    pub fn learn_server_name(&self, node: u16, name: &str) {
        let mut names = self.server_names.lock().unwrap_or_else(|p| p.into_inner());
        if names.get(&node).is_none_or(|known| **known != *name) {
            names.insert(node, name.into());
        }
    }

    /// Node `node`'s server name, once a heartbeat of it has arrived.
    pub fn server_name(&self, node: u16) -> Option<std::sync::Arc<str>> {
        let names = self.server_names.lock().unwrap_or_else(|p| p.into_inner());
        names.get(&node).cloned()
    }

    /// Registers the calling shard thread as waiting for a proposal.
    pub fn wait_here(&self) {
        let me = std::thread::current();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if !waiting.iter().any(|t| t.id() == me.id()) {
            waiting.push(me);
        }
    }

    /// Unparks every shard thread that ever waited (after the log grew). Spurious
    /// unparks are harmless: a waiter re-checks the log.
    pub fn wake_waiters(&self) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for thread in waiting.iter() {
            thread.unpark();
        }
    }
}
