//! `loadgen compare BASELINE.json RESULT.json`: the CI performance-regression check,
//! deciding from repeated runs (`--repeat N`) rather than from one run per side.
//!
//! Like with like: results whose scenario parameters differ are refused (unless
//! `--allow-param-diff`), naming the parameters. Then steps are paired by label
//! (`rate=1000`), and each figure (throughput, p50, p99, server CPU per delivery) is
//! judged on its own from the per-run values of each side: a Mann-Whitney U test says
//! whether the sides differ, the change of medians with a bootstrap interval says by
//! how much, and a change counts only when it is both significant and larger than the
//! figure's tolerance. A result that lost messages or had errors fails whatever its
//! speed. Both sides' figures are always printed. Must not: run anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::report::{format_bytes, format_us, Report, StepResult};
use crate::significance::{
    bootstrap_change_interval, mann_whitney_p, median, median_change, smallest_p,
};

/// How strict the comparison is.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Smallest change of throughput or server CPU per delivery that counts (0.05 = 5%).
    pub throughput: f64,
    /// Smallest change of p50 or p99 that counts (latency is noisier).
    pub latency: f64,
    /// Significance level of the test: a change counts only with p below it.
    pub alpha: f64,
    /// Compare results whose scenario parameters differ.
    pub allow_param_diff: bool,
}

/// A resolution at least this fraction of a figure is said beside its verdict (a CPU
/// reading in 10 ms ticks over a short step).
const COARSE_RESOLUTION: f64 = 0.01;

/// Confidence of the printed interval of each change.
const INTERVAL_CONFIDENCE: f64 = 0.95;

/// The verdict and the table to print.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Both sides' figures and each figure's verdict.
    pub table: String,
    /// Scenario parameters that differ, as one line (`clients 100 vs 20, ...`).
    pub param_diff: Option<String>,
    /// Figures that got slower, and failed checks of the result.
    pub regressions: Vec<String>,
    /// Why some figure could not be decided (too few runs for the significance level).
    pub undecided: Vec<String>,
}

/// Parameters that do not change what is measured: where the server is, where files
/// go, how the run is shown, how often it is repeated.
const NOT_SCENARIO_PARAMS: &[&str] = &[
    "addr",
    "server_pid",
    "cpu",
    "json",
    "hgrm",
    "plot",
    "label",
    "quiet",
    "setup_timeout",
    "source_ips",
    "tls_insecure",
    "tls_ca",
    "tls_server_name",
    "traffic.repeat",
];

/// Reads a loadgen JSON result.
pub fn read_report(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a loadgen JSON result", path.display()))
}

/// The parameters that define a run's scenario, flattened (`traffic.rate`), each
/// value as a user would type it (`500ms`, `100,200`).
fn scenario_params(report: &Report) -> BTreeMap<String, String> {
    fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(map) if as_duration(value).is_none() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), typed_value(other));
            }
        }
    }
    let mut out = BTreeMap::new();
    flatten("", &report.params, &mut out);
    out.retain(|k, _| !NOT_SCENARIO_PARAMS.contains(&k.as_str()));
    if let Some(hold) = out.get_mut("hold_s") {
        hold.push('s');
    }
    out.insert("scenario".to_string(), report.scenario.clone());
    // Where the servers are does not matter, how many there are does: one node and a
    // cluster of two are different scenarios.
    let servers = report
        .params
        .get("addr")
        .and_then(|a| a.as_str())
        .map_or(1, |a| a.split(',').count());
    out.insert("servers".to_string(), servers.to_string());
    out
}

/// A `Duration` as serde writes it (`{"secs": 0, "nanos": 500000000}`), in seconds.
fn as_duration(value: &serde_json::Value) -> Option<f64> {
    let map = value.as_object()?;
    if map.len() != 2 {
        return None;
    }
    let secs = map.get("secs")?.as_f64()?;
    let nanos = map.get("nanos")?.as_f64()?;
    Some(secs + nanos / 1e9)
}

/// A parameter's value as typed on the command line: `500ms`, `2s`, `100,200`, `20`.
fn typed_value(value: &serde_json::Value) -> String {
    if let Some(secs) = as_duration(value) {
        return if secs == 0.0 {
            "0s".to_string()
        } else if secs < 1.0 {
            format!("{}ms", secs * 1e3)
        } else {
            format!("{secs}s")
        };
    }
    match value {
        serde_json::Value::Array(items) => {
            items.iter().map(typed_value).collect::<Vec<_>>().join(",")
        }
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
            _ => n.to_string(),
        },
        serde_json::Value::Bool(true) => "given".to_string(),
        serde_json::Value::Bool(false) => "not given".to_string(),
        serde_json::Value::Null => "(default)".to_string(),
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Object(_) => value.to_string(),
    }
}

/// The flag a user types for a flattened parameter: `traffic.warmup` -> `--warmup`.
fn flag_name(key: &str) -> String {
    match key {
        "scenario" => "scenario".to_string(),
        "servers" => "number of --addr servers".to_string(),
        "senders_per_channel" => "--senders".to_string(),
        "hold_s" => "--hold".to_string(),
        _ => format!(
            "--{}",
            key.rsplit('.').next().unwrap_or(key).replace('_', "-")
        ),
    }
}

/// The scenario parameters that differ, as `--flag base vs new` items.
fn differing_params(baseline: &Report, result: &Report) -> Vec<String> {
    let (a, b) = (scenario_params(baseline), scenario_params(result));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!("{} {} vs {}", flag_name(k), show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

/// One figure of a step, and which way is better.
struct Figure {
    name: &'static str,
    value: fn(&StepResult) -> Option<f64>,
    format: fn(f64) -> String,
    higher_is_better: bool,
    latency: bool,
    /// The smallest step a run's value can take (the CPU reading's resolution), when
    /// it has one worth saying: a difference below it is not a measured change.
    resolution: fn(&StepResult) -> Option<f64>,
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "throughput/s",
        value: |s| Some(s.throughput_per_s),
        format: |v| format!("{v:.0}"),
        higher_is_better: true,
        latency: false,
        resolution: |_| None,
    },
    Figure {
        name: "p50",
        value: |s| (s.latency.count > 0).then_some(s.latency.p50_us),
        format: format_us,
        higher_is_better: false,
        latency: true,
        resolution: |_| None,
    },
    Figure {
        name: "p99",
        value: |s| (s.latency.count > 0).then_some(s.latency.p99_us),
        format: format_us,
        higher_is_better: false,
        latency: true,
        resolution: |_| None,
    },
    Figure {
        name: "srv us/delivery",
        value: |s| s.server_cpu_us_per_delivery,
        format: |v| format!("{v:.3}"),
        higher_is_better: false,
        latency: false,
        resolution: StepResult::server_cpu_resolution_us,
    },
];

/// Compares `result` with `baseline`.
pub fn compare(baseline: &Report, result: &Report, thresholds: &Thresholds) -> Comparison {
    let mut c = Comparison::default();
    let differing = differing_params(baseline, result);
    if !differing.is_empty() {
        c.param_diff = Some(differing.join(", "));
    }
    let _ = writeln!(
        c.table,
        "{:<14} {:<15} {:>26} {:>26} {:>8}  verdict",
        "step", "figure", "baseline median [range] n", "result median [range] n", "change"
    );
    let labels = step_labels(baseline, result);
    for label in &labels {
        let base: Vec<&StepResult> = baseline
            .steps
            .iter()
            .filter(|s| &s.label == label)
            .collect();
        let new: Vec<&StepResult> = result.steps.iter().filter(|s| &s.label == label).collect();
        if new.is_empty() {
            c.regressions
                .push(format!("{label}: missing from the result"));
        }
        for figure in FIGURES {
            let a: Vec<f64> = base.iter().filter_map(|s| (figure.value)(s)).collect();
            let b: Vec<f64> = new.iter().filter_map(|s| (figure.value)(s)).collect();
            if a.is_empty() && b.is_empty() {
                continue;
            }
            let resolution = base
                .iter()
                .chain(&new)
                .filter_map(|s| (figure.resolution)(s))
                .fold(0.0f64, f64::max);
            let mut verdict = if resolution > 0.0
                && !a.is_empty()
                && !b.is_empty()
                && (median(&b) - median(&a)).abs() < resolution
            {
                format!(
                    "no change: {} is below the measurement resolution {}",
                    (figure.format)((median(&b) - median(&a)).abs()),
                    (figure.format)(resolution)
                )
            } else {
                judge(label, figure, &a, &b, thresholds, &mut c)
            };
            if resolution >= COARSE_RESOLUTION * median(&a).max(median(&b)) && resolution > 0.0 {
                let _ = write!(
                    verdict,
                    " (CPU read in clock ticks: one step is {} here)",
                    (figure.format)(resolution)
                );
            }
            let _ = writeln!(
                c.table,
                "{:<14} {:<15} {:>26} {:>26} {:>8}  {verdict}",
                label,
                figure.name,
                side(&a, figure.format),
                side(&b, figure.format),
                if a.is_empty() || b.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:+.1}%", median_change(&a, &b) * 100.0)
                },
            );
        }
        for s in new.iter().filter(|s| !s.passed) {
            c.regressions.push(format!(
                "{label} run {}: result did not verify (lost {}, late {}, duplicates {}, errors {})",
                s.repeat, s.lost, s.late, s.counts.duplicates, s.errors
            ));
        }
    }
    compare_single_figures(baseline, result, thresholds, &mut c);
    c
}

/// Step labels of both sides, the baseline's order first.
fn step_labels(baseline: &Report, result: &Report) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for s in baseline.steps.iter().chain(&result.steps) {
        if !labels.contains(&s.label) {
            labels.push(s.label.clone());
        }
    }
    labels
}

/// `1.23ms [1.10ms..1.40ms] 5` : median, range and number of runs of one side.
fn side(values: &[f64], format: fn(f64) -> String) -> String {
    if values.is_empty() {
        return "-".to_string();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() == 1 {
        format!("{} 1", format(values[0]))
    } else {
        format!(
            "{} [{}..{}] {}",
            format(median(values)),
            format(min),
            format(max),
            values.len()
        )
    }
}

/// One figure's verdict: "no change", "faster by X% (...)" or "slower by X% (...)".
fn judge(
    label: &str,
    figure: &Figure,
    a: &[f64],
    b: &[f64],
    thresholds: &Thresholds,
    c: &mut Comparison,
) -> String {
    if a.is_empty() || b.is_empty() {
        return "only on one side".to_string();
    }
    let floor = smallest_p(a.len(), b.len());
    if floor >= thresholds.alpha {
        c.undecided.push(format!(
            "{label} {}: {} run(s) against {} cannot reach significance {} (the smallest possible p is {:.3}); record both sides with --repeat 5 or more",
            figure.name,
            a.len(),
            b.len(),
            thresholds.alpha,
            floor
        ));
        return "undecided (too few runs)".to_string();
    }
    if median(a) <= 0.0 {
        return "no baseline figure (median 0)".to_string();
    }
    let p = mann_whitney_p(a, b);
    let change = median_change(a, b);
    let tolerance = if figure.latency {
        thresholds.latency
    } else {
        thresholds.throughput
    };
    if p >= thresholds.alpha {
        return format!("no change (p={p:.2})");
    }
    if change.abs() <= tolerance {
        return format!(
            "no change ({:+.1}% is within {:.0}%, p={p:.3})",
            change * 100.0,
            tolerance * 100.0
        );
    }
    let (low, high) = bootstrap_change_interval(a, b, INTERVAL_CONFIDENCE);
    let worse = (change < 0.0) == figure.higher_is_better;
    let evidence = format!(
        "p={p:.3}, {:.0}% CI {:+.1}%..{:+.1}%",
        INTERVAL_CONFIDENCE * 100.0,
        low * 100.0,
        high * 100.0
    );
    if worse {
        c.regressions.push(format!(
            "{label}: {} slower by {:.1}% ({evidence})",
            figure.name,
            change.abs() * 100.0
        ));
        format!("SLOWER by {:.1}% ({evidence})", change.abs() * 100.0)
    } else {
        format!("faster by {:.1}% ({evidence})", change.abs() * 100.0)
    }
}

/// Figures a run has once (idle memory per client, the saturation search's rate),
/// judged against the tolerance alone: one value per side has no spread to test.
fn compare_single_figures(
    baseline: &Report,
    result: &Report,
    thresholds: &Thresholds,
    c: &mut Comparison,
) {
    let mut row = |what: &str, base: String, new: String, change: f64, bad: bool| {
        let _ = writeln!(
            c.table,
            "{:<14} {:<15} {:>26} {:>26} {:>+7.1}%  {}",
            what,
            "",
            base,
            new,
            change * 100.0,
            if bad { "WORSE beyond tolerance" } else { "ok" }
        );
    };
    if let (Some(base), Some(new)) = (&baseline.idle, &result.idle) {
        if let (Some(b), Some(n)) = (base.server_bytes_per_client, new.server_bytes_per_client) {
            let change = relative(b, n);
            let bad = change > thresholds.throughput;
            row(
                "idle bytes/client",
                format_bytes(b),
                format_bytes(n),
                change,
                bad,
            );
            if bad {
                c.regressions.push(format!(
                    "idle: memory per client rose {:.1}%",
                    change * 100.0
                ));
            }
        }
    }
    if let (Some(b), Some(n)) = (baseline.max_rate, result.max_rate) {
        let change = relative(b, n);
        let bad = change < -thresholds.throughput;
        row(
            "max rate/s",
            format!("{b:.0}"),
            format!("{n:.0}"),
            change,
            bad,
        );
        if bad {
            c.regressions
                .push(format!("saturation rate fell {:.1}%", -change * 100.0));
        }
    } else if result.max_rate.is_none() && !result.ok && c.regressions.is_empty() {
        c.regressions.push(format!(
            "result failed its checks ({} errors)",
            result.error_count
        ));
    }
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
    use crate::stats::Recorder;

    const STRICT: Thresholds = Thresholds {
        throughput: 0.05,
        latency: 0.10,
        alpha: 0.01,
        allow_param_diff: false,
    };

    /// A report with one run per `(rate, throughput, p99 ns)`.
    fn report(runs: &[(f64, f64, u64)]) -> Report {
        let mut report: Report = serde_json::from_value(serde_json::json!({
            "tool": "loadgen test", "label": null, "scenario": "fanout",
            "params": { "clients": 100, "addr": "127.0.0.1:1", "traffic": { "rate": [1000.0], "repeat": 5 } },
            "server_version": null, "kernel": "", "started_unix_s": 0, "steps": [],
            "idle": null, "max_rate": null, "errors": [], "error_count": 0, "ok": true
        }))
        .expect("valid report");
        for &(rate, throughput, p99_ns) in runs {
            let mut r = Recorder::default();
            r.begin_step(1, (0, u64::MAX));
            r.latency.record(p99_ns).expect("in range");
            let mut step = StepResult::messages(rate, 1.0, &r, None, ProcUsage::default(), 0, 0);
            step.throughput_per_s = throughput;
            report.push_step(step);
        }
        report
    }

    fn five(throughputs: [f64; 5], p99s_ns: [u64; 5]) -> Report {
        let runs: Vec<_> = throughputs
            .iter()
            .zip(p99s_ns)
            .map(|(&t, p)| (1000.0, t, p))
            .collect();
        report(&runs)
    }

    #[test]
    fn identical_samples_are_no_change() {
        let base = five(
            [100_000.0; 5],
            [200_000, 210_000, 190_000, 205_000, 195_000],
        );
        let c = compare(&base, &base, &STRICT);
        assert!(c.regressions.is_empty(), "{:?}\n{}", c.regressions, c.table);
        assert!(c.undecided.is_empty(), "{:?}", c.undecided);
        assert!(c.param_diff.is_none());
        assert!(c.table.contains("no change"), "{}", c.table);
        assert!(!c.table.contains("SLOWER"));
    }

    #[test]
    fn noisy_overlapping_runs_are_no_change_even_with_a_big_single_outlier() {
        let base = five(
            [100_000.0; 5],
            [200_000, 260_000, 190_000, 205_000, 195_000],
        );
        let new = five(
            [100_000.0; 5],
            [210_000, 198_000, 900_000, 202_000, 193_000],
        );
        let c = compare(&base, &new, &STRICT);
        assert!(c.regressions.is_empty(), "{:?}\n{}", c.regressions, c.table);
    }

    #[test]
    fn shifted_samples_are_slower() {
        let base = five(
            [100_000.0; 5],
            [200_000, 210_000, 190_000, 205_000, 195_000],
        );
        let new = five(
            [80_000.0, 81_000.0, 79_000.0, 80_500.0, 79_500.0],
            [300_000, 310_000, 290_000, 305_000, 295_000],
        );
        let c = compare(&base, &new, &STRICT);
        // Throughput, and p50 and p99 (one latency per run here, so they are equal).
        assert_eq!(c.regressions.len(), 3, "{:?}\n{}", c.regressions, c.table);
        assert!(
            c.regressions[0].contains("throughput/s slower by 20.0%"),
            "{:?}",
            c.regressions
        );
        assert!(
            c.regressions[2].contains("p99 slower by 50.0%"),
            "{:?}",
            c.regressions
        );
        assert!(c.table.contains("SLOWER by"));
        // The other way round it is faster, which is no regression.
        let c = compare(&new, &base, &STRICT);
        assert!(c.regressions.is_empty(), "{:?}", c.regressions);
        assert!(c.table.contains("faster by"));
    }

    #[test]
    fn a_significant_change_within_the_tolerance_is_no_change() {
        let base = five(
            [100_000.0, 100_100.0, 100_200.0, 100_300.0, 100_400.0],
            [200_000; 5],
        );
        let new = five(
            [98_000.0, 98_100.0, 98_200.0, 98_300.0, 98_400.0],
            [200_000; 5],
        );
        let c = compare(&base, &new, &STRICT);
        assert!(c.regressions.is_empty(), "{:?}\n{}", c.regressions, c.table);
        assert!(c.table.contains("within 5%"), "{}", c.table);
    }

    #[test]
    fn one_run_per_side_is_undecided() {
        let base = report(&[(1000.0, 100_000.0, 200_000)]);
        let new = report(&[(1000.0, 50_000.0, 900_000)]);
        let c = compare(&base, &new, &STRICT);
        assert!(!c.undecided.is_empty());
        assert!(c.regressions.is_empty());
        assert!(c.table.contains("undecided"));
    }

    #[test]
    fn differing_parameters_are_named_and_both_sides_printed() {
        let base = five([100_000.0; 5], [200_000; 5]);
        let mut new = five([20_000.0; 5], [200_000; 5]);
        new.params["clients"] = serde_json::json!(20);
        new.params["addr"] = serde_json::json!("127.0.0.1:2");
        new.params["traffic"]["repeat"] = serde_json::json!(3);
        let c = compare(&base, &new, &STRICT);
        assert_eq!(c.param_diff.as_deref(), Some("--clients 100 vs 20"));
        assert!(
            c.table.contains("100000") && c.table.contains("20000"),
            "{}",
            c.table
        );
    }

    #[test]
    fn differing_parameters_are_named_by_the_flags_a_user_types() {
        let mut base = five([100_000.0; 5], [200_000; 5]);
        base.params["traffic"]["warmup"] = serde_json::json!({ "secs": 0, "nanos": 0 });
        base.params["traffic"]["find_max"] = serde_json::json!(false);
        let mut new = base.clone();
        new.params["traffic"]["warmup"] = serde_json::json!({ "secs": 0, "nanos": 500_000_000 });
        new.params["traffic"]["rate"] = serde_json::json!([100.0, 200.0]);
        new.params["traffic"]["find_max"] = serde_json::json!(true);
        let c = compare(&base, &new, &STRICT);
        assert_eq!(
            c.param_diff.as_deref(),
            Some("--find-max not given vs given, --rate 1000 vs 100,200, --warmup 0s vs 500ms")
        );
    }

    /// Server CPU per delivery from one tick (10 ms) over 9,800 deliveries can only be
    /// 1.02, 2.04, 3.06... µs: a difference of one step is no measured change.
    #[test]
    fn a_cpu_difference_below_the_resolution_is_said_so() {
        let with_cpu = |cpu_s: [f64; 5], resolution_s: f64| {
            let mut r = five([9_800.0; 5], [200_000; 5]);
            for (step, cpu_s) in r.steps.iter_mut().zip(cpu_s) {
                step.counts.delivered_measured = 9_800;
                step.server = Some(ProcUsage {
                    cpu_s,
                    cpu_resolution_s: resolution_s,
                    ..ProcUsage::default()
                });
                step.server_cpu_us_per_delivery = Some(cpu_s * 1e6 / 9_800.0);
            }
            r
        };
        let base = with_cpu([0.02; 5], 0.01);
        let new = with_cpu([0.03; 5], 0.01);
        let c = compare(&base, &new, &STRICT);
        assert!(c.regressions.is_empty(), "{:?}\n{}", c.regressions, c.table);
        assert!(
            c.table
                .contains("no change: 1.020 is below the measurement resolution 1.020"),
            "{}",
            c.table
        );
        assert!(c.table.contains("CPU read in clock ticks"), "{}", c.table);
        // The same 50% more CPU read at 1 ns is a measured change.
        let base = with_cpu([0.020_01, 0.020_02, 0.020_03, 0.020_04, 0.020_05], 1e-9);
        let new = with_cpu([0.030_01, 0.030_02, 0.030_03, 0.030_04, 0.030_05], 1e-9);
        let c = compare(&base, &new, &STRICT);
        assert!(
            c.regressions
                .iter()
                .any(|r| r.contains("srv us/delivery slower")),
            "{:?}\n{}",
            c.regressions,
            c.table
        );
        assert!(!c.table.contains("clock ticks"), "{}", c.table);
    }

    #[test]
    fn a_cluster_is_not_compared_with_one_server() {
        let base = five([100_000.0; 5], [200_000; 5]);
        let mut new = five([100_000.0; 5], [200_000; 5]);
        new.params["addr"] = serde_json::json!("127.0.0.1:1,127.0.0.1:2");
        let c = compare(&base, &new, &STRICT);
        assert_eq!(
            c.param_diff.as_deref(),
            Some("number of --addr servers 1 vs 2")
        );
    }

    #[test]
    fn loss_or_missing_step_fails() {
        let base = report(&[(1000.0, 100_000.0, 200_000), (2000.0, 1.0, 1)]);
        let mut new = report(&[(1000.0, 100_000.0, 200_000)]);
        new.steps[0].passed = false;
        new.steps[0].lost = 5;
        let c = compare(&base, &new, &STRICT);
        assert_eq!(c.regressions.len(), 2, "{:?}", c.regressions);
    }
}
