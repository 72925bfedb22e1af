//! What the threads of one run share (`--threads N`): the time origin, the barrier
//! that starts and ends each step together, the step plan the first thread decides,
//! the counters each thread publishes for progress and grace, and the step figures
//! they hand over to be merged.
//!
//! Each thread runs its own current-thread runtime with its share of the clients, so
//! nothing here is touched per delivery: a thread publishes its counters once per read
//! or send batch (a relaxed store each) and hands over its histograms once per step,
//! where the first thread merges them exactly (HdrHistogram `add`). Must not: hold a
//! lock across an `.await`, or be waited on by a thread that is not running its
//! runtime (every wait here is async, so the waiting thread keeps answering PINGs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;
use tokio::sync::{Barrier, Semaphore};

use crate::stats::{Backlog, Counts};

/// What every thread does next, decided by the first thread between barriers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepPlan {
    /// Run step `step` at `rate` messages/s, its first message due at `t0` (ns since
    /// the run's start), the same instant on every thread.
    Run { step: u32, rate: f64, t0: u64 },
    /// No more steps: close the connections.
    Stop,
}

/// One thread's counters of the current step, published for the others.
#[derive(Debug, Default)]
struct Published {
    sent: AtomicU64,
    expected: AtomicU64,
    delivered: AtomicU64,
    /// Late deliveries over the whole run (not reset per step).
    late_total: AtomicU64,
}

/// Counters summed over the threads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TeamCounts {
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub late_total: u64,
}

/// One thread's figures of a finished step, handed to the first thread to merge.
pub struct StepShare {
    pub latency: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    pub counts: Counts,
    pub backlog: Backlog,
    /// The pacer's lateness early and late in the window (saturation criterion).
    pub send_backlog: Backlog,
    /// The thread's longest time without a delivery in the window (see `Recorder`).
    pub longest_gap_ns: u64,
    pub send_failures: u64,
    pub errors: u64,
}

/// One thread's end of the run: its errors and its late deliveries per step.
pub struct ThreadEnd {
    pub errors: Vec<String>,
    pub error_count: u64,
    pub late_by_step: Vec<u64>,
}

/// Shared by the threads of one run through an `Arc`; dropped when the run returns.
pub struct Team {
    /// Number of threads.
    pub threads: usize,
    /// The run's time origin (CLOCK_MONOTONIC ns), common to every thread so a payload's
    /// scheduled time means the same on the thread that receives it.
    pub start_ns: u64,
    /// Bounds the clients in setup at once over all threads (`--connect-concurrency`).
    pub setup_gate: Semaphore,
    barrier: Barrier,
    plan: Mutex<StepPlan>,
    published: Vec<Published>,
    shares: Mutex<Vec<StepShare>>,
    ends: Mutex<Vec<ThreadEnd>>,
    /// The first setup failure of any thread: every thread stops after the setup barrier.
    failure: Mutex<Option<String>>,
    /// The server's version from `004`, seen by any thread.
    server_version: Mutex<Option<String>>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Team {
    pub fn new(threads: usize, start_ns: u64, connect_concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            threads,
            start_ns,
            setup_gate: Semaphore::new(connect_concurrency.max(1)),
            barrier: Barrier::new(threads),
            plan: Mutex::new(StepPlan::Stop),
            published: (0..threads).map(|_| Published::default()).collect(),
            shares: Mutex::new(Vec::new()),
            ends: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            server_version: Mutex::new(None),
        })
    }

    /// Waits until every thread got here (async: the caller's clients keep reading).
    pub async fn sync(&self) {
        self.barrier.wait().await;
    }

    /// The first thread sets the plan before a [`Team::sync`]; all read it after.
    pub fn set_plan(&self, plan: StepPlan) {
        *lock(&self.plan) = plan;
    }

    pub fn plan(&self) -> StepPlan {
        *lock(&self.plan)
    }

    /// Publishes thread `thread`'s counters of the current step.
    pub fn publish(&self, thread: usize, counts: &Counts, late_total: u64) {
        let p = &self.published[thread];
        p.sent.store(counts.sent, Ordering::Relaxed);
        p.expected.store(counts.expected, Ordering::Relaxed);
        p.delivered.store(counts.delivered, Ordering::Relaxed);
        p.late_total.store(late_total, Ordering::Relaxed);
    }

    /// The counters of every thread, summed (as last published).
    pub fn counts(&self) -> TeamCounts {
        let mut sum = TeamCounts::default();
        for p in &self.published {
            sum.sent += p.sent.load(Ordering::Relaxed);
            sum.expected += p.expected.load(Ordering::Relaxed);
            sum.delivered += p.delivered.load(Ordering::Relaxed);
            sum.late_total += p.late_total.load(Ordering::Relaxed);
        }
        sum
    }

    pub fn hand_over(&self, share: StepShare) {
        lock(&self.shares).push(share);
    }

    /// Every thread's share of the step just finished (after the step's last sync).
    pub fn take_shares(&self) -> Vec<StepShare> {
        std::mem::take(&mut *lock(&self.shares))
    }

    pub fn finish(&self, end: ThreadEnd) {
        lock(&self.ends).push(end);
    }

    pub fn take_ends(&self) -> Vec<ThreadEnd> {
        std::mem::take(&mut *lock(&self.ends))
    }

    /// Records a setup failure (the first one is kept).
    pub fn fail(&self, reason: String) {
        lock(&self.failure).get_or_insert(reason);
    }

    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    pub fn note_server_version(&self, version: Option<String>) {
        if let Some(v) = version {
            lock(&self.server_version).get_or_insert(v);
        }
    }

    pub fn server_version(&self) -> Option<String> {
        lock(&self.server_version).clone()
    }
}
