//! The shutdown sequence, written once for every driver: the tokio-uring and epoll
//! tasks (`io::run_shard`) and the ring driver's loop step through the same phases
//! and differ only in how they wait between steps.
//!
//! Order matters for "nothing accepted is lost": client input stops with the
//! shutdown flag; each shard then delivers what it accepted and sends its last
//! hand-offs (sealing); once every shard has sealed (or the deadline passed), each
//! takes in the last of the others' hand-offs and only then says goodbye to its
//! clients (draining); it is done once their output has flushed (or the deadline).

use super::Shard;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Where a stopping shard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPhase {
    /// Sent its own hand-offs; waits for every shard to have sent theirs.
    Sealing,
    /// Said goodbye to every client; waits for their output to flush.
    Draining,
    /// Every client is gone, or the deadline passed.
    Done,
}

/// One shard's progress through the shutdown sequence.
#[derive(Debug)]
pub struct ShutdownSequence {
    phase: ShutdownPhase,
    /// When waiting for other shards or for clients' output gives up.
    deadline: Instant,
}

impl ShutdownSequence {
    /// Begins the sequence for `shard` (its listeners are already closed): delivers
    /// what it accepted, sends its hand-offs and counts it as sealed.
    pub fn begin(shard: &mut Shard, now: Instant) -> ShutdownSequence {
        shard.pump();
        shard.flush_handoffs();
        shard.shared.handoffs_sealed.fetch_add(1, Ordering::AcqRel);
        ShutdownSequence {
            phase: ShutdownPhase::Sealing,
            deadline: now + shard.shared.config.shutdown_timeout,
        }
    }

    /// Where the sequence is.
    pub fn phase(&self) -> ShutdownPhase {
        self.phase
    }

    /// Takes the next step the other shards and the clients allow, and says where
    /// the sequence is now; a driver calls it again after waiting a little.
    pub fn advance(&mut self, shard: &mut Shard, now: Instant) -> ShutdownPhase {
        let shared = shard.shared.clone();
        if self.phase == ShutdownPhase::Sealing {
            // A destination that was full at `begin` takes the rest now.
            shard.flush_handoffs();
            let all_sealed = shared.handoffs_sealed.load(Ordering::Acquire) >= shared.config.shards;
            if all_sealed || now >= self.deadline {
                shard.pump();
                shard.begin_shutdown();
                self.phase = ShutdownPhase::Draining;
            }
        }
        if self.phase == ShutdownPhase::Draining
            && (shard.connection_count() == 0 || now >= self.deadline)
        {
            self.phase = ShutdownPhase::Done;
        }
        self.phase
    }
}
