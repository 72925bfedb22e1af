//! Shards without sockets: a fixture that accepts fake peers, feeds their lines, moves
//! hand-offs between shards and drains outboxes, all on the caller's thread with an
//! injected clock. Used by the sans-IO conversation tests, the allocation gate and the
//! benchmarks, so they exercise exactly the code the drivers run.

use crate::config::Config;
use crate::shard::Shard;
use crate::state::{ClientId, Shared};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Several shards in one thread; see the module comment.
pub struct ShardFixture {
    /// The shards, indexed by their number.
    pub shards: Vec<Shard>,
    /// Their shared state.
    pub shared: Arc<Shared>,
    /// The injected clock.
    pub now: Instant,
    batch: Vec<Bytes>,
}

impl ShardFixture {
    /// `config.shards` shards with no clients.
    pub fn new(config: Config) -> ShardFixture {
        let shared = Arc::new(Shared::new(config));
        let shards = (0..shared.config.shards as u16)
            .map(|id| Shard::new(id, shared.clone(), crate::commands::handle))
            .collect();
        ShardFixture {
            shards,
            shared,
            now: Instant::now(),
            batch: Vec::new(),
        }
    }

    /// Accepts a peer on `shard` and registers it as `nick`, discarding the burst.
    pub fn register(&mut self, shard: u16, nick: &str) -> ClientId {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let id = self.shards[shard as usize]
            .accept(peer, self.now)
            .expect("the fixture's config admits the client");
        self.send(id, &format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"));
        self.drain(id);
        id
    }

    /// Feeds raw input from client `id`, then moves hand-offs between shards.
    pub fn send(&mut self, id: ClientId, input: &str) {
        self.send_bytes(id, input.as_bytes());
    }

    /// Feeds raw bytes from client `id`, then moves hand-offs between shards.
    pub fn send_bytes(&mut self, id: ClientId, input: &[u8]) {
        let now = self.now;
        self.shards[id.shard as usize].receive(id, input, now);
        self.exchange_handoffs();
    }

    /// Sends every shard's pending hand-offs and lets each shard apply the log and
    /// handle what it received, as their pumps would, until nothing is left.
    pub fn exchange_handoffs(&mut self) {
        loop {
            for shard in self.shards.iter_mut() {
                shard.flush_handoffs();
            }
            let mut moved = false;
            for shard in self.shards.iter_mut() {
                moved |= shard.pump();
            }
            if !moved && !self.shards.iter().any(Shard::has_outgoing) {
                return;
            }
        }
    }

    /// Moves the clock forward and runs each shard's timers, as the housekeeping
    /// ticker would.
    pub fn advance(&mut self, by: std::time::Duration) {
        self.now += by;
        let now = self.now;
        for shard in self.shards.iter_mut() {
            shard.resume_throttled(now);
            shard.check_liveness(now);
        }
        self.exchange_handoffs();
    }

    /// Takes everything queued for `id`, as a writer would, and reports it written.
    pub fn drain(&mut self, id: ClientId) -> Vec<Bytes> {
        let mut lines = Vec::new();
        self.drain_into(id, &mut lines);
        lines
    }

    /// Like [`ShardFixture::drain`], reusing the fixture's batch: allocation-free
    /// once warm, for benchmarks and the allocation gate. Returns the bytes drained.
    pub fn drain_quietly(&mut self, id: ClientId) -> usize {
        let mut batch = std::mem::take(&mut self.batch);
        let bytes = self.drain_into(id, &mut batch);
        batch.clear();
        self.batch = batch;
        bytes
    }

    fn drain_into(&mut self, id: ClientId, lines: &mut Vec<Bytes>) -> usize {
        let shard = &mut self.shards[id.shard as usize];
        let Some(client) = shard.client_mut(id) else {
            return 0;
        };
        let start = lines.len();
        while client.outbox.has_queued() {
            client.outbox.take_batch(lines, usize::MAX);
        }
        let bytes = lines[start..].iter().map(Bytes::len).sum();
        client.outbox.wrote(bytes);
        bytes
    }

    /// The lines queued for `id`, as text.
    pub fn drain_text(&mut self, id: ClientId) -> Vec<String> {
        self.drain(id)
            .iter()
            .map(|line| String::from_utf8_lossy(line).trim_end().to_owned())
            .collect()
    }
}
