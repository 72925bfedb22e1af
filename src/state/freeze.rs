//! Stopping every shard at one point for a live upgrade, and letting them go on if
//! the upgrade fails.
//!
//! The coordinator (the process's main thread) asks; each shard's driver stops its
//! socket operations (cancels its accepts, receives and sends and waits for them to
//! complete), then steps through the shard's freeze sequence (`shard/freeze.rs`): input
//! stopped everywhere, hand-offs sealed everywhere, the last of them taken in, the
//! shard captured. The order is the shutdown sequence's, for the same reason:
//! nothing a client sent and the server accepted may be left between two shards.
//! Once every shard has posted its capture, nothing changes in this process until
//! the coordinator either exits (the new process took over) or thaws.

use super::handover::{LinkCapture, ShardCapture};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The shards' meeting point; one per process, in [`crate::state::Shared`].
#[derive(Debug, Default)]
pub struct Freeze {
    /// Shards should freeze (or stay frozen); cleared to thaw.
    asked: AtomicBool,
    /// Numbers each upgrade's farewell to the connections that cannot be handed
    /// over (0: none asked yet), so a shard says it once per upgrade.
    farewell: AtomicU64,
    /// Shards whose farewelled connections have all gone, this upgrade.
    farewell_done: AtomicUsize,
    /// Shards whose input has stopped.
    input_stopped: AtomicUsize,
    /// Shards that have sent every hand-off they will send before the capture.
    sealed: AtomicUsize,
    /// Each shard's capture, once taken.
    captures: Mutex<Vec<Option<ShardCapture>>>,
    /// A cluster node's link, once it has settled (it seals after every shard).
    link: Mutex<Option<LinkCapture>>,
    captured: Condvar,
}

impl Freeze {
    /// Whether shards should be frozen.
    pub fn is_asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Asks every shard to tell its TLS and WebSocket clients that the server is
    /// upgrading and close them, output flushed (before the freeze: a frozen shard
    /// writes nothing). Returns the farewell's number.
    pub fn ask_farewell(&self) -> u64 {
        self.farewell_done.store(0, Ordering::Release);
        self.farewell.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The farewell asked last (0: none).
    pub fn farewell(&self) -> u64 {
        self.farewell.load(Ordering::Acquire)
    }

    /// A shard's farewelled connections have all gone.
    pub fn note_farewell_done(&self) {
        self.farewell_done.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits until every one of `shards` shards has seen its farewelled connections
    /// go, or `timeout` passes (the freeze then closes what is left without a word).
    pub fn wait_for_farewells(&self, shards: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.farewell_done.load(Ordering::Acquire) < shards {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Asks `shards` shards to freeze (the caller wakes them).
    pub fn ask(&self, shards: usize) {
        *lock(&self.captures) = (0..shards).map(|_| None).collect();
        *lock(&self.link) = None;
        self.input_stopped.store(0, Ordering::Release);
        self.sealed.store(0, Ordering::Release);
        self.asked.store(true, Ordering::Release);
    }

    /// Lets every shard go on (the caller wakes them). Their captures are dropped:
    /// they only copied state.
    pub fn thaw(&self) {
        self.asked.store(false, Ordering::Release);
        lock(&self.captures).clear();
        *lock(&self.link) = None;
    }

    /// A shard's input has stopped.
    pub fn note_input_stopped(&self) {
        self.input_stopped.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether every one of `shards` shards has stopped its input.
    pub fn all_input_stopped(&self, shards: usize) -> bool {
        self.input_stopped.load(Ordering::Acquire) >= shards
    }

    /// A shard has sent its last hand-offs.
    pub fn note_sealed(&self) {
        self.sealed.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether every one of `sealers` (the shards, and a cluster node's link after
    /// them) has sealed.
    pub fn all_sealed(&self, sealers: usize) -> bool {
        self.sealed.load(Ordering::Acquire) >= sealers
    }

    /// A cluster node's link has settled where `capture` says, and seals: it
    /// appends and forwards nothing more until a thaw.
    pub fn post_link(&self, capture: LinkCapture) {
        *lock(&self.link) = Some(capture);
        self.note_sealed();
    }

    /// The link's capture, once posted.
    pub fn take_link(&self) -> Option<LinkCapture> {
        lock(&self.link).take()
    }

    /// A shard's capture; the last one wakes the coordinator.
    pub fn post(&self, shard: u16, capture: ShardCapture) {
        let mut captures = lock(&self.captures);
        if let Some(slot) = captures.get_mut(usize::from(shard)) {
            *slot = Some(capture);
        }
        self.captured.notify_all();
    }

    /// Every shard's capture, once all are in, or `None` after `timeout` (a shard
    /// that could not settle: work in flight that did not come back).
    pub fn wait_for_captures(&self, timeout: Duration) -> Option<Vec<ShardCapture>> {
        let deadline = Instant::now() + timeout;
        let mut captures = lock(&self.captures);
        loop {
            if !captures.is_empty() && captures.iter().all(Option::is_some) {
                return Some(captures.drain(..).flatten().collect());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            captures = self
                .captured
                .wait_timeout(captures, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
