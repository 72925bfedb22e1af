//! `loadgen compare BASELINE.json RESULT.json`: the CI performance-regression check.
//!
//! Steps are paired by label (`rate=1000`, `connect`). A pair regresses when the
//! result's throughput is lower than the baseline's by more than the tolerance, or its
//! p99 is higher by more than the (p99) tolerance. A result that lost messages or had
//! errors fails whatever its speed; an idle result regresses when memory per client
//! grows beyond the tolerance. Must not: run anything.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::report::{format_bytes, format_us, Report};

/// The verdict and the table to print.
#[derive(Debug)]
pub struct Comparison {
    pub table: String,
    pub regressions: Vec<String>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }
}

/// Reads a loadgen JSON result.
pub fn read_report(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a loadgen JSON result", path.display()))
}

/// Compares `result` with `baseline`.
pub fn compare(
    baseline: &Report,
    result: &Report,
    max_regress: f64,
    max_p99_regress: f64,
) -> Comparison {
    let mut table = String::new();
    let mut regressions = Vec::new();
    let _ = writeln!(
        table,
        "{:<14} {:<12} {:>14} {:>14} {:>9}  verdict",
        "step", "metric", "baseline", "result", "change"
    );
    let mut row = |step: &str, metric: &str, base: String, new: String, change: f64, bad: bool| {
        let _ = writeln!(
            table,
            "{:<14} {:<12} {:>14} {:>14} {:>+8.1}%  {}",
            step,
            metric,
            base,
            new,
            change * 100.0,
            if bad { "REGRESSION" } else { "ok" }
        );
    };
    for base in &baseline.steps {
        let Some(new) = result.steps.iter().find(|s| s.label == base.label) else {
            regressions.push(format!("{}: missing from the result", base.label));
            continue;
        };
        let change = relative(base.throughput_per_s, new.throughput_per_s);
        let bad = change < -max_regress;
        row(
            &base.label,
            "throughput/s",
            format!("{:.0}", base.throughput_per_s),
            format!("{:.0}", new.throughput_per_s),
            change,
            bad,
        );
        if bad {
            regressions.push(format!(
                "{}: throughput fell {:.1}%",
                base.label,
                -change * 100.0
            ));
        }
        let change = relative(base.latency.p99_us, new.latency.p99_us);
        let bad = change > max_p99_regress;
        row(
            &base.label,
            "p99",
            format_us(base.latency.p99_us),
            format_us(new.latency.p99_us),
            change,
            bad,
        );
        if bad {
            regressions.push(format!("{}: p99 rose {:.1}%", base.label, change * 100.0));
        }
        if !new.passed {
            regressions.push(format!(
                "{}: result did not verify (lost {}, duplicates {}, errors {})",
                new.label, new.lost, new.counts.duplicates, new.errors
            ));
        }
    }
    if let (Some(base), Some(new)) = (&baseline.idle, &result.idle) {
        if let (Some(b), Some(n)) = (base.server_bytes_per_client, new.server_bytes_per_client) {
            let change = relative(b, n);
            let bad = change > max_regress;
            row(
                "idle",
                "bytes/client",
                format_bytes(b),
                format_bytes(n),
                change,
                bad,
            );
            if bad {
                regressions.push(format!(
                    "idle: memory per client rose {:.1}%",
                    change * 100.0
                ));
            }
        }
    }
    if let (Some(b), Some(n)) = (baseline.max_rate, result.max_rate) {
        let change = relative(b, n);
        let bad = change < -max_regress;
        row(
            "search",
            "max rate/s",
            format!("{b:.0}"),
            format!("{n:.0}"),
            change,
            bad,
        );
        if bad {
            regressions.push(format!("saturation rate fell {:.1}%", -change * 100.0));
        }
    } else if result.max_rate.is_none() && !result.ok {
        regressions.push(format!(
            "result failed its checks ({} errors)",
            result.error_count
        ));
    }
    Comparison { table, regressions }
}

/// (new - base) / base; 0 when the baseline is 0.
fn relative(base: f64, new: f64) -> f64 {
    if base > 0.0 {
        (new - base) / base
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::ProcUsage;
    use crate::report::StepResult;
    use crate::stats::Recorder;

    fn report(steps: &[(f64, f64, u64)]) -> Report {
        let mut report: Report = serde_json::from_value(serde_json::json!({
            "tool": "loadgen test", "label": null, "scenario": "fanout", "params": {},
            "server_version": null, "kernel": "", "started_unix_s": 0, "steps": [],
            "idle": null, "max_rate": null, "errors": [], "error_count": 0, "ok": true
        }))
        .expect("valid report");
        for &(rate, throughput, p99_ns) in steps {
            let mut r = Recorder::default();
            r.begin_step(1, (0, u64::MAX));
            r.latency.record(p99_ns).expect("in range");
            let mut step = StepResult::messages(rate, 1.0, &r, None, ProcUsage::default(), 0, 0);
            step.throughput_per_s = throughput;
            report.steps.push(step);
        }
        report
    }

    #[test]
    fn within_tolerance_passes() {
        let base = report(&[(1000.0, 100_000.0, 200_000), (2000.0, 200_000.0, 300_000)]);
        let new = report(&[(1000.0, 95_000.0, 215_000), (2000.0, 210_000.0, 250_000)]);
        let c = compare(&base, &new, 0.10, 0.10);
        assert!(c.passed(), "{:?}\n{}", c.regressions, c.table);
        assert!(c.table.contains("rate=2000"));
    }

    #[test]
    fn throughput_drop_or_p99_rise_fails() {
        let base = report(&[(1000.0, 100_000.0, 200_000)]);
        let slower = report(&[(1000.0, 80_000.0, 200_000)]);
        let c = compare(&base, &slower, 0.10, 0.10);
        assert_eq!(c.regressions.len(), 1, "{:?}", c.regressions);
        assert!(c.table.contains("REGRESSION"));
        let laggier = report(&[(1000.0, 100_000.0, 400_000)]);
        assert!(!compare(&base, &laggier, 0.10, 0.10).passed());
        assert!(compare(&base, &laggier, 0.10, 1.5).passed());
    }

    #[test]
    fn loss_or_missing_step_fails() {
        let base = report(&[(1000.0, 100_000.0, 200_000), (2000.0, 1.0, 1)]);
        let mut new = report(&[(1000.0, 100_000.0, 200_000)]);
        new.steps[0].passed = false;
        new.steps[0].lost = 5;
        let c = compare(&base, &new, 0.10, 0.10);
        assert_eq!(c.regressions.len(), 2, "{:?}", c.regressions);
    }
}
