//! When loadgen itself is the bottleneck: the criterion behind the report's warning and
//! the plot's "(loadgen saturated)" label.
//!
//! A busy machine makes the pacer send messages late now and then (it waits for a CPU
//! after its timer fires): that is jitter, which shows in the latency it adds, and it
//! does not grow. A pacer that cannot keep up is later and later: each batch of due
//! messages takes longer to send than the schedule gives it. So the criterion is
//! (a) the pacer fell behind its schedule: messages due in the last quarter of the
//! measured window were sent, on average, more than [`BEHIND_GROWTH_NS`] later than
//! those due in the first quarter (and at least twice as late); or (b) loadgen's CPU
//! above [`SATURATION_CORES`] per thread (a pacer exactly at its limit does not fall
//! behind yet, but has no headroom). A p99 of the send lag is no criterion: at
//! 100 msg/s two late messages in a 2 s step are its p99, and on a loaded machine a
//! fifth of the messages can be a millisecond late at 0.07 cores.
//!
//! Owns: the criterion, a pure function of the step's early/late send lag and
//! loadgen's CPU. Must not: measure anything.

use crate::report::format_us;
use crate::stats::Backlog;

/// Loadgen's own CPU (cores per thread) above which its figures may measure loadgen.
pub const SATURATION_CORES: f64 = 0.85;

/// How much later (mean) the last quarter's messages may be sent than the first
/// quarter's before the pacer counts as falling behind.
pub const BEHIND_GROWTH_NS: f64 = 5_000_000.0;

/// Why loadgen was saturated in a step, or `None` when it kept up: `cores` is its CPU
/// over the step (the whole process), `threads` its sender threads, `send_lag` the
/// pacer's lateness early and late in the measured window.
pub fn judge(cores: f64, threads: u32, send_lag: &Backlog) -> Option<String> {
    let threads = threads.max(1);
    let (early_us, late_us) = send_lag.means_us();
    let growth_ns = (late_us - early_us) * 1e3;
    if send_lag.late_count > 0 && growth_ns > BEHIND_GROWTH_NS && late_us > 2.0 * early_us {
        return Some(format!(
            "its pacer fell behind its schedule (messages sent {} late on average early in the step, {} at its end)",
            format_us(early_us),
            format_us(late_us)
        ));
    }
    if cores > SATURATION_CORES * threads as f64 {
        return Some(format!("it used {cores:.2} cores with {threads} thread(s)"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const WINDOW: (u64, u64) = (0, 2_000 * MS);

    /// A recorded schedule: `rate` messages/s over the 2 s window, message k sent
    /// `lag(k)` ns after it was due.
    fn schedule(rate: u64, lag: impl Fn(u64) -> u64) -> Backlog {
        let mut b = Backlog::default();
        let interval = 1_000_000_000 / rate;
        for k in 0..rate * 2 {
            b.record(k * interval, lag(k), WINDOW);
        }
        b
    }

    /// A cheap reproducible spread: 0..n from k.
    fn scatter(k: u64, n: u64) -> u64 {
        k.wrapping_mul(2_654_435_761) % n
    }

    #[test]
    fn saturation_only_when_the_schedule_is_not_kept() {
        struct Case {
            what: &'static str,
            lags: Backlog,
            cores: f64,
            threads: u32,
            saturated: bool,
        }
        let cases = [
            Case {
                // The false alarm: two messages delayed by a busy machine
                // (send lag p99 2.49 ms), 0.03 cores.
                what: "100/s with two hiccups at 0.03 cores",
                lags: schedule(100, |k| if k % 100 == 7 { 2_490_000 } else { 40_000 }),
                cores: 0.03,
                threads: 1,
                saturated: false,
            },
            Case {
                // Measured at load average 9 on 2 cores: 21% of messages more than
                // 1 ms late, up to 10 ms, at 0.07 cores.
                what: "a loaded machine: a fifth of the messages 1-10 ms late",
                lags: schedule(100, |k| {
                    if scatter(k, 5) == 0 {
                        MS + scatter(k, 9) * MS
                    } else {
                        100_000
                    }
                }),
                cores: 0.07,
                threads: 1,
                saturated: false,
            },
            Case {
                what: "a 30 ms stall at the end of a 100,000/s step",
                lags: schedule(100_000, |k| {
                    if (190_000..193_000).contains(&k) {
                        30 * MS - (k - 190_000) * 10_000
                    } else {
                        20_000
                    }
                }),
                cores: 0.5,
                threads: 1,
                saturated: false,
            },
            Case {
                what: "falling behind steadily (the lag grows to 50 ms)",
                lags: schedule(10_000, |k| k * 2_500),
                cores: 0.6,
                threads: 1,
                saturated: true,
            },
            Case {
                what: "behind from the warm-up on, and further behind",
                lags: schedule(10_000, |k| 200 * MS + k * 20_000),
                cores: 0.6,
                threads: 1,
                saturated: true,
            },
            Case {
                what: "on time but 0.93 cores of one thread",
                lags: schedule(1_000, |_| 30_000),
                cores: 0.93,
                threads: 1,
                saturated: true,
            },
            Case {
                what: "0.93 cores over two threads",
                lags: schedule(1_000, |_| 30_000),
                cores: 0.93,
                threads: 2,
                saturated: false,
            },
            Case {
                what: "no messages (connect storm) at 0.2 cores",
                lags: Backlog::default(),
                cores: 0.2,
                threads: 1,
                saturated: false,
            },
        ];
        for case in cases {
            let verdict = judge(case.cores, case.threads, &case.lags);
            assert_eq!(
                verdict.is_some(),
                case.saturated,
                "{}: {verdict:?}",
                case.what
            );
        }
    }

    #[test]
    fn says_why() {
        let behind = schedule(1_000, |k| k * 100_000);
        assert_eq!(
            judge(0.1, 1, &behind).as_deref(),
            Some("its pacer fell behind its schedule (messages sent 24.95ms late on average early in the step, 174.95ms at its end)")
        );
        let on_time = schedule(1_000, |_| 1_000);
        assert_eq!(
            judge(0.9, 1, &on_time).as_deref(),
            Some("it used 0.90 cores with 1 thread(s)")
        );
    }
}
