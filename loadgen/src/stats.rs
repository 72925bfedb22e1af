//! Delivery verification and latency recording.
//!
//! Owns: the per-(receiver, sender) sequence tracker that classifies each arrival as
//! in order, reordered or duplicated; the step [`Recorder`] (HdrHistogram plus
//! counters) that every receiver of a run writes into; and the summary of a histogram.
//! Must not: allocate per recorded message, or know about sockets.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::irc::Payload;

/// Highest latency the histograms track: one hour, in nanoseconds. Larger values are
/// clamped to it (they are failures anyway).
pub const MAX_TRACKABLE_NS: u64 = 3_600_000_000_000;

/// A new latency histogram in nanoseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3).expect("constant histogram bounds are valid")
}

/// How one message arrived relative to the ones seen before from the same sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected sequence number, or a later one (the skipped ones are gaps:
    /// lost, or still to come out of order).
    InOrder,
    /// Lower than one already seen, while a gap was open: a late, out-of-order delivery.
    Reordered,
    /// Lower than one already seen with no gap open: it was delivered before.
    Duplicate,
}

/// What one receiver knows about one sender: 16 bytes, one per sender of its channel.
///
/// The reorder/duplicate split is exact when only one of the two happens; with both
/// at once, a duplicate may be counted as a reorder. Loss itself does not depend on it:
/// lost = expected deliveries - distinct deliveries, counted over the whole run.
#[derive(Debug, Default, Clone, Copy)]
pub struct SenderTrack {
    /// The step the counters below belong to.
    step: u32,
    /// One past the highest sequence number seen.
    next: u64,
    /// Sequence numbers skipped and not (yet) filled in this step.
    gaps: u64,
}

impl SenderTrack {
    /// Classifies the arrival of `seq` sent in `step`, and remembers it.
    pub fn observe(&mut self, step: u32, seq: u64) -> Arrival {
        if step != self.step {
            self.step = step;
            self.gaps = 0;
        }
        if seq >= self.next {
            self.gaps += seq - self.next;
            self.next = seq + 1;
            Arrival::InOrder
        } else if self.gaps > 0 {
            self.gaps -= 1;
            Arrival::Reordered
        } else {
            Arrival::Duplicate
        }
    }
}

/// Counters of one step. `expected` and `sent*` are written by the pacer, the rest by
/// receivers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Messages sent in the step (warm-up included).
    pub sent: u64,
    /// Messages whose scheduled time fell in the measured window.
    pub sent_measured: u64,
    /// Deliveries expected: for each message, the members of its channel but the sender.
    pub expected: u64,
    /// Distinct deliveries (in order or reordered; duplicates excluded).
    pub delivered: u64,
    /// Distinct deliveries of messages scheduled in the measured window.
    pub delivered_measured: u64,
    /// Deliveries of a message the receiver had already seen.
    pub duplicates: u64,
    /// Deliveries that came after a later message from the same sender.
    pub reordered: u64,
    /// Deliveries stamped with a step this run never had (another loadgen's, or a
    /// corrupted payload). A message of an earlier step arriving after its grace period
    /// is *late* instead, counted with that step ([`Recorder::late_by_step`]).
    pub stale: u64,
}

impl Counts {
    /// Expected deliveries that never came.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Distinct deliveries beyond what was expected (a server echoing messages back,
    /// or another loadgen sharing the channel).
    pub fn unexpected(&self) -> u64 {
        self.delivered.saturating_sub(self.expected)
    }

    /// True when every delivery was verified: nothing lost, duplicated or unexpected.
    pub fn verified(&self) -> bool {
        self.lost() == 0 && self.duplicates == 0 && self.unexpected() == 0
    }
}

/// Everything receivers record during one step. One per run, shared by every
/// connection of the (single-threaded) runtime; reset between steps.
pub struct Recorder {
    /// The step being recorded; messages stamped with another step are stale.
    pub step: u32,
    /// Measured window `[start, end)` in ns since the run's start: messages scheduled
    /// in it are measured; earlier ones are warm-up.
    pub window: (u64, u64),
    /// Latency from scheduled send time to receipt, ns, measured window only.
    pub latency: Histogram<u64>,
    /// How late the pacer actually sent each message after its scheduled time, ns:
    /// loadgen's own lateness (large values mean loadgen is the bottleneck).
    pub send_lag: Histogram<u64>,
    /// Delivery counters.
    pub counts: Counts,
    /// Set when the step's grace period is over: from then on its deliveries are late.
    grace_over: bool,
    /// Deliveries that arrived after their step's grace period, indexed by step - 1:
    /// they were delayed, not lost. Kept across steps (one entry per step so far).
    pub late_by_step: Vec<u64>,
    /// The sum of `late_by_step`.
    pub late_total: u64,
    /// Mean latency early and late in the measured window: a backlog that grows
    /// steadily is the signature of a server throttling each sender.
    pub backlog: Backlog,
    /// Mean pacer lateness early and late in the measured window: a pacer that cannot
    /// keep up is later and later (see `saturation`).
    pub send_backlog: Backlog,
    /// The longest time between two deliveries of the measured window, ns: how long
    /// the server went silent (a live upgrade's freeze shows here, not in p99).
    pub longest_gap_ns: u64,
    /// When the last delivery of the measured window arrived, ns since the run's start.
    last_delivery_ns: Option<u64>,
}

/// Latency sums of the first and last quarter of a step's measured window (by
/// scheduled time), for [`Backlog::grows_steadily`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backlog {
    pub early_sum_ns: u64,
    pub early_count: u64,
    pub late_sum_ns: u64,
    pub late_count: u64,
}

impl Backlog {
    /// Counts a delay `ns` of a message scheduled at `sched_ns` in the quarter of the
    /// measured `window` it falls in (the middle half is not counted).
    #[inline]
    pub fn record(&mut self, sched_ns: u64, ns: u64, window: (u64, u64)) {
        let quarter = (window.1.saturating_sub(window.0)) / 4;
        if sched_ns < window.0 {
            return;
        }
        if sched_ns < window.0 + quarter {
            self.early_sum_ns += ns;
            self.early_count += 1;
        } else if sched_ns >= window.1 - quarter && sched_ns < window.1 {
            self.late_sum_ns += ns;
            self.late_count += 1;
        }
    }

    /// Adds another thread's sums.
    pub fn add(&mut self, other: &Backlog) {
        self.early_sum_ns += other.early_sum_ns;
        self.early_count += other.early_count;
        self.late_sum_ns += other.late_sum_ns;
        self.late_count += other.late_count;
    }

    /// Mean latency (µs) of the first and the last quarter of the window.
    pub fn means_us(&self) -> (f64, f64) {
        let mean = |sum: u64, n: u64| {
            if n > 0 {
                sum as f64 / n as f64 / 1000.0
            } else {
                0.0
            }
        };
        (
            mean(self.early_sum_ns, self.early_count),
            mean(self.late_sum_ns, self.late_count),
        )
    }

    /// True when deliveries fell behind the schedule at a steady pace instead of
    /// jittering around it: messages scheduled late in the window waited far longer
    /// than those scheduled early (4x, and by over 100 ms), or the early ones already
    /// waited over 100 ms and most late ones did not arrive within the grace period
    /// at all (the backlog outgrew it).
    pub fn grows_steadily(&self) -> bool {
        let (early, late) = self.means_us();
        let grew = self.late_count > 0 && late > 4.0 * early && late - early > 100_000.0;
        let outgrew_grace = early > 100_000.0 && self.late_count * 2 < self.early_count;
        grew || outgrew_grace
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            step: 0,
            window: (0, u64::MAX),
            latency: new_histogram(),
            send_lag: new_histogram(),
            counts: Counts::default(),
            grace_over: false,
            late_by_step: Vec::new(),
            late_total: 0,
            backlog: Backlog::default(),
            send_backlog: Backlog::default(),
            longest_gap_ns: 0,
            last_delivery_ns: None,
        }
    }
}

impl Recorder {
    /// Starts a new step: clears counters and histograms (no reallocation).
    pub fn begin_step(&mut self, step: u32, window: (u64, u64)) {
        self.step = step;
        self.window = window;
        self.latency.reset();
        self.send_lag.reset();
        self.counts = Counts::default();
        self.backlog = Backlog::default();
        self.send_backlog = Backlog::default();
        self.longest_gap_ns = 0;
        self.last_delivery_ns = None;
        self.grace_over = false;
        if self.late_by_step.len() < step as usize {
            self.late_by_step.resize(step as usize, 0);
        }
    }

    /// Ends the step's grace period: its counters are final, and its deliveries that
    /// still arrive are late.
    pub fn end_step(&mut self) {
        self.grace_over = true;
    }

    /// Records one delivery received at `now_rel_ns` (ns since the run's start) by a
    /// receiver whose knowledge of this sender is `track`.
    #[inline]
    pub fn record(&mut self, track: &mut SenderTrack, p: &Payload, now_rel_ns: u64) {
        if p.step != self.step || self.grace_over {
            match self.late_by_step.get_mut((p.step as usize).wrapping_sub(1)) {
                Some(late) if p.step <= self.step => {
                    *late += 1;
                    self.late_total += 1;
                }
                _ => self.counts.stale += 1,
            }
            return;
        }
        match track.observe(p.step, p.seq) {
            Arrival::Duplicate => {
                self.counts.duplicates += 1;
                return;
            }
            Arrival::Reordered => self.counts.reordered += 1,
            Arrival::InOrder => {}
        }
        self.counts.delivered += 1;
        if p.sched_ns >= self.window.0 && p.sched_ns < self.window.1 {
            self.counts.delivered_measured += 1;
            let latency = now_rel_ns.saturating_sub(p.sched_ns).max(1);
            self.latency.saturating_record(latency);
            self.backlog.record(p.sched_ns, latency, self.window);
            if let Some(last) = self.last_delivery_ns.replace(now_rel_ns) {
                self.longest_gap_ns = self.longest_gap_ns.max(now_rel_ns.saturating_sub(last));
            }
        }
    }
}

/// A histogram's figures in microseconds, plus its percentile spectrum for plots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of recorded values.
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub p99999_us: f64,
    pub max_us: f64,
    /// `[quantile, microseconds]` pairs, 5 per halving of the distance to 100%
    /// (the HdrHistogram percentile-distribution points).
    pub spectrum: Vec<[f64; 2]>,
}

impl LatencySummary {
    /// Summarises a histogram of nanosecond values.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |quantile: f64| us(h.value_at_quantile(quantile));
        Self {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            stdev_us: h.stdev() / 1000.0,
            p50_us: q(0.5),
            p75_us: q(0.75),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            p99999_us: q(0.99999),
            max_us: us(h.max()),
            spectrum: h
                .iter_quantiles(5)
                .map(|v| [v.quantile_iterated_to(), us(v.value_iterated_to())])
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(step: u32, seq: u64, sched_ns: u64) -> Payload {
        Payload {
            step,
            slot: 0,
            seq,
            sched_ns,
        }
    }

    #[test]
    fn tracker_classifies_arrivals() {
        let mut t = SenderTrack::default();
        assert_eq!(t.observe(0, 0), Arrival::InOrder);
        assert_eq!(t.observe(0, 1), Arrival::InOrder);
        assert_eq!(t.observe(0, 1), Arrival::Duplicate);
        assert_eq!(t.observe(0, 4), Arrival::InOrder); // 2 and 3 skipped
        assert_eq!(t.observe(0, 2), Arrival::Reordered);
        assert_eq!(t.observe(0, 3), Arrival::Reordered);
        assert_eq!(t.observe(0, 3), Arrival::Duplicate);
        // A new step closes the gaps of the old one: its losses were counted there.
        assert_eq!(t.observe(0, 9), Arrival::InOrder);
        assert_eq!(t.observe(1, 10), Arrival::InOrder);
        assert_eq!(t.observe(1, 5), Arrival::Duplicate);
    }

    #[test]
    fn the_longest_gap_is_the_longest_silence_between_measured_deliveries() {
        let mut r = Recorder::default();
        r.begin_step(1, (1_000, 100_000));
        let mut track = SenderTrack::default();
        // Warm-up (not measured), then deliveries at 2,000, 3,000, 40,000, 41,000.
        r.record(&mut track, &payload(1, 0, 500), 600);
        for (seq, received) in [(1, 2_000), (2, 3_000), (3, 40_000), (4, 41_000)] {
            r.record(&mut track, &payload(1, seq, 1_500), received);
        }
        assert_eq!(r.longest_gap_ns, 37_000);
        r.begin_step(2, (0, u64::MAX));
        assert_eq!(r.longest_gap_ns, 0, "a step starts without a gap");
    }

    #[test]
    fn recorder_counts_loss_duplicates_reordering_and_warmup() {
        let mut r = Recorder::default();
        r.begin_step(3, (1_000, 10_000));
        // Two receivers, each expecting 5 messages from one sender.
        r.counts.expected = 10;
        let mut a = SenderTrack::default();
        let mut b = SenderTrack::default();
        // Receiver a: 0 (warm-up), 1, 3, 2 (reordered), 3 again (duplicate), 4.
        for (seq, sched) in [
            (0, 500),
            (1, 1_500),
            (3, 3_500),
            (2, 2_500),
            (3, 3_500),
            (4, 4_500),
        ] {
            r.record(&mut a, &payload(3, seq, sched), sched + 100);
        }
        // Receiver b: loses 2 and 4; gets a stale message from step 2.
        for (seq, sched) in [(0, 500), (1, 1_500), (3, 3_500)] {
            r.record(&mut b, &payload(3, seq, sched), sched + 250);
        }
        r.record(&mut b, &payload(2, 77, 0), 9_000);
        r.record(&mut b, &payload(9, 1, 0), 9_000);

        assert_eq!(r.counts.delivered, 8);
        assert_eq!(r.counts.lost(), 2);
        assert_eq!(r.counts.duplicates, 1);
        assert_eq!(r.counts.reordered, 1);
        assert_eq!(r.counts.stale, 1, "step 9 never ran");
        assert_eq!(r.late_by_step, vec![0, 1, 0], "step 2's message came late");
        assert_eq!(r.late_total, 1);
        assert!(!r.counts.verified());
        // Warm-up deliveries (sched 500) are counted but not measured.
        assert_eq!(r.counts.delivered_measured, 6);
        assert_eq!(r.latency.len(), 6);
        assert_eq!(r.latency.max(), 250);
        assert_eq!(r.latency.min(), 100);

        r.begin_step(4, (0, u64::MAX));
        assert_eq!(r.counts, Counts::default());
        assert!(r.latency.is_empty());
        assert_eq!(r.late_total, 1, "late counts outlive their step");
    }

    #[test]
    fn a_steadily_growing_backlog_is_recognised() {
        let mut r = Recorder::default();
        r.begin_step(1, (0, 4_000_000_000));
        let mut track = SenderTrack::default();
        // Throttled: each message waits 100 ms longer than the one before.
        for k in 0..40u64 {
            let sched = k * 100_000_000;
            r.record(
                &mut track,
                &payload(1, k, sched),
                sched + 1_000_000 + k * 100_000_000,
            );
        }
        assert!(r.backlog.grows_steadily(), "{:?}", r.backlog);
        // The same, with the last quarter's messages still queued when the grace ended.
        r.begin_step(2, (0, 4_000_000_000));
        let mut track = SenderTrack::default();
        for k in 0..30u64 {
            let sched = k * 100_000_000;
            r.record(
                &mut track,
                &payload(2, k, sched),
                sched + 200_000_000 + k * 100_000_000,
            );
        }
        assert!(r.backlog.grows_steadily(), "{:?}", r.backlog);
        // Jitter around a steady latency is not a backlog.
        r.begin_step(3, (0, 4_000_000_000));
        let mut track = SenderTrack::default();
        for k in 0..40u64 {
            let sched = k * 100_000_000;
            r.record(
                &mut track,
                &payload(3, k, sched),
                sched + 1_000_000 + (k % 3) * 400_000,
            );
        }
        assert!(!r.backlog.grows_steadily(), "{:?}", r.backlog);
    }

    #[test]
    fn summary_reports_percentiles_in_microseconds() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).expect("in range"); // 1 us .. 1000 us
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() < 1.0, "{}", s.p99_us);
        assert!((s.max_us - 1000.0).abs() < 1.0, "{}", s.max_us);
        assert_eq!(s.spectrum.first().map(|p| p[0]), Some(0.0));
        assert_eq!(s.spectrum.last().map(|p| p[0]), Some(1.0));
        assert!(s
            .spectrum
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        assert_eq!(LatencySummary::from_histogram(&new_histogram()).count, 0);
    }
}
