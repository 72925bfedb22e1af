//! The result model and its outputs: terminal tables (wrk2 style), the JSON file and
//! HdrHistogram percentile-distribution (`.hgrm`) files.
//!
//! Owns: what a result contains and how it is printed. Must not: measure anything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cli::CommonArgs;
use crate::procstat::{CpuSource, PidUsage, ProcSample, ProcUsage, ServerUsage};
use crate::saturation;
use crate::scenario::Scenario;
use crate::stats::{Counts, LatencySummary, Recorder};
use crate::team::ThreadEnd;

/// Everything a run produced: what `--json` writes and `compare`/`plot` read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// "loadgen <version>".
    pub tool: String,
    /// The run's name from --label (used in plots and comparisons).
    pub label: Option<String>,
    /// fanout, rooms, connect or idle.
    pub scenario: String,
    /// The command-line parameters (password excluded).
    pub params: serde_json::Value,
    /// The server's version from 004 RPL_MYINFO.
    pub server_version: Option<String>,
    /// How many clients went to each server of `--addr`, in its order.
    #[serde(default)]
    pub clients_per_addr: Vec<AddrClients>,
    /// `uname -sr` of this machine.
    pub kernel: String,
    /// Unix time the run started.
    pub started_unix_s: u64,
    /// One entry per step (rate), or one for the connect storm.
    pub steps: Vec<StepResult>,
    /// The idle scenario's figures.
    pub idle: Option<IdleResult>,
    /// The saturation search's answer: the highest passing rate (messages/s).
    pub max_rate: Option<f64>,
    /// The first errors (disconnects, refusals), verbatim.
    pub errors: Vec<String>,
    /// Number of errors, all of them.
    pub error_count: u64,
    /// True when every step verified every delivery and nothing failed.
    pub ok: bool,
}

/// The clients one server of `--addr` was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrClients {
    pub addr: String,
    pub clients: u32,
}

/// The figures of one step (one rate), or of the connect storm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    /// "rate=1000" or "connect": how `compare` pairs steps.
    pub label: String,
    /// Scheduled messages per second (connect: 0).
    pub target_rate: f64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Messages sent per second in the measured window.
    pub sent_per_s: f64,
    /// Deliveries per second in the measured window (connect: connections per second).
    pub throughput_per_s: f64,
    /// Delivery counters (the whole step, warm-up included).
    pub counts: Counts,
    /// Which run of this step (1..=--repeat) this is.
    #[serde(default = "first_run")]
    pub repeat: u32,
    /// Expected deliveries that never arrived (by the end of the run).
    pub lost: u64,
    /// Deliveries that arrived after the step's grace period: delayed, not lost.
    #[serde(default)]
    pub late: u64,
    /// Mean latency of messages scheduled in the first and the last quarter of the
    /// measured window, µs: far apart when deliveries fell steadily behind.
    #[serde(default)]
    pub backlog_early_mean_us: f64,
    #[serde(default)]
    pub backlog_late_mean_us: f64,
    /// Deliveries fell behind the schedule at a steady pace (see `Backlog`).
    #[serde(default)]
    pub fell_behind_steadily: bool,
    /// Messages that could not be sent (broken connection).
    pub send_failures: u64,
    /// Errors (disconnects) during the step.
    pub errors: u64,
    /// Latency from scheduled send time to receipt (connect: time to 001).
    pub latency: LatencySummary,
    /// The longest time with no delivery in the measured window, microseconds (with
    /// several threads, the longest of any one thread's: an upper bound).
    #[serde(default)]
    pub longest_gap_us: f64,
    /// p99 and max of the pacer's lateness, microseconds.
    pub send_lag_p99_us: f64,
    pub send_lag_max_us: f64,
    /// The server's CPU and RSS over the measured window (with --server-pid; with
    /// several pids, their sum: the whole cluster).
    pub server: Option<ProcUsage>,
    /// Each server process's part of `server` when --server-pid lists several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_by_pid: Vec<PidUsage>,
    /// Server CPU microseconds per delivery (per connection for connect).
    pub server_cpu_us_per_delivery: Option<f64>,
    /// loadgen's own CPU over the measured window.
    pub loadgen: ProcUsage,
    /// loadgen CPU microseconds per delivery.
    pub loadgen_cpu_us_per_delivery: f64,
    /// loadgen was saturated (see `saturation`): the figures may measure loadgen,
    /// not the server.
    pub loadgen_saturated: bool,
    /// Why `loadgen_saturated`, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadgen_saturation: Option<String>,
    /// The pacer's mean lateness for messages due in the first and the last quarter
    /// of the measured window, µs: far apart when it fell behind its schedule.
    #[serde(default)]
    pub send_lag_early_mean_us: f64,
    #[serde(default)]
    pub send_lag_late_mean_us: f64,
    /// Every delivery verified and no errors.
    pub passed: bool,
    /// The latency histogram's percentile distribution (written by --hgrm).
    #[serde(skip)]
    pub hgrm: String,
}

impl StepResult {
    /// A message step's figures from its recorder.
    pub fn messages(
        rate: f64,
        duration_s: f64,
        recorder: &Recorder,
        server: Option<ServerUsage>,
        loadgen: ProcUsage,
        send_failures: u64,
        errors: u64,
    ) -> Self {
        let server_by_pid = server.as_ref().map(ServerUsage::parts).unwrap_or_default();
        let server = server.map(|s| s.total);
        let counts = recorder.counts;
        let deliveries = counts.delivered_measured as f64;
        let per_delivery = |cpu_s: f64| {
            if deliveries > 0.0 {
                cpu_s * 1e6 / deliveries
            } else {
                0.0
            }
        };
        let send_lag_p99_us = recorder.send_lag.value_at_quantile(0.99) as f64 / 1000.0;
        let (backlog_early_mean_us, backlog_late_mean_us) = recorder.backlog.means_us();
        let saturation = saturation::judge(loadgen.cores, 1, &recorder.send_backlog);
        let (send_lag_early_mean_us, send_lag_late_mean_us) = recorder.send_backlog.means_us();
        Self {
            label: format!("rate={rate}"),
            repeat: 1,
            late: 0,
            backlog_early_mean_us,
            backlog_late_mean_us,
            fell_behind_steadily: recorder.backlog.grows_steadily(),
            target_rate: rate,
            duration_s,
            sent_per_s: counts.sent_measured as f64 / duration_s,
            throughput_per_s: deliveries / duration_s,
            counts,
            lost: counts.lost(),
            send_failures,
            errors,
            latency: LatencySummary::from_histogram(&recorder.latency),
            longest_gap_us: recorder.longest_gap_ns as f64 / 1000.0,
            send_lag_p99_us,
            send_lag_max_us: recorder.send_lag.max() as f64 / 1000.0,
            server_cpu_us_per_delivery: server.map(|s| per_delivery(s.cpu_s)),
            server,
            server_by_pid,
            loadgen_cpu_us_per_delivery: per_delivery(loadgen.cpu_s),
            loadgen_saturated: saturation.is_some(),
            loadgen_saturation: saturation,
            send_lag_early_mean_us,
            send_lag_late_mean_us,
            loadgen,
            passed: counts.verified() && send_failures == 0 && errors == 0,
            hgrm: hgrm_text(&recorder.latency),
        }
    }

    /// The connect storm as a step: connections/s and time to 001.
    pub fn connect(
        clients: f64,
        wall_s: f64,
        welcome: &Histogram<u64>,
        server: Option<ServerUsage>,
        loadgen: ProcUsage,
    ) -> Self {
        let server_by_pid = server.as_ref().map(ServerUsage::parts).unwrap_or_default();
        let server = server.map(|s| s.total);
        // No pacer: only loadgen's CPU can say it was the bottleneck.
        let saturation = saturation::judge(loadgen.cores, 1, &crate::stats::Backlog::default());
        let per_conn = |cpu_s: f64| {
            if clients > 0.0 {
                cpu_s * 1e6 / clients
            } else {
                0.0
            }
        };
        Self {
            label: "connect".to_string(),
            repeat: 1,
            late: 0,
            backlog_early_mean_us: 0.0,
            backlog_late_mean_us: 0.0,
            fell_behind_steadily: false,
            target_rate: 0.0,
            duration_s: wall_s,
            sent_per_s: 0.0,
            throughput_per_s: if wall_s > 0.0 { clients / wall_s } else { 0.0 },
            counts: Counts::default(),
            lost: 0,
            send_failures: 0,
            errors: 0,
            latency: LatencySummary::from_histogram(welcome),
            longest_gap_us: 0.0,
            send_lag_p99_us: 0.0,
            send_lag_max_us: 0.0,
            server_cpu_us_per_delivery: server.map(|s| per_conn(s.cpu_s)),
            server,
            server_by_pid,
            loadgen_cpu_us_per_delivery: per_conn(loadgen.cpu_s),
            loadgen_saturated: saturation.is_some(),
            loadgen_saturation: saturation,
            send_lag_early_mean_us: 0.0,
            send_lag_late_mean_us: 0.0,
            loadgen,
            passed: true,
            hgrm: hgrm_text(welcome),
        }
    }
}

impl StepResult {
    /// Records the saturation verdict (`saturation::judge`).
    pub fn set_saturation(&mut self, reason: Option<String>) {
        self.loadgen_saturated = reason.is_some();
        self.loadgen_saturation = reason;
    }

    /// The smallest step of `server_cpu_us_per_delivery`: one step of the CPU reading
    /// spread over the step's deliveries (connect: connections). A tick reading (10 ms)
    /// over 9,800 deliveries can only say 1.02, 2.04, 3.06... µs per delivery.
    pub fn server_cpu_resolution_us(&self) -> Option<f64> {
        let server = self.server?;
        let per = self.server_cpu_us_per_delivery?;
        let units = if per > 0.0 && server.cpu_s > 0.0 {
            server.cpu_s * 1e6 / per
        } else {
            self.counts.delivered_measured as f64
        };
        (units > 0.0).then(|| server.cpu_resolution_s * 1e6 / units)
    }
}

/// `schedstat (1 ns)` or `clock ticks (10 ms, fallback)`: a CPU figure's source.
pub fn cpu_source_name(usage: &ProcUsage) -> String {
    match usage.cpu_source {
        CpuSource::Schedstat => "schedstat (1 ns)".to_string(),
        CpuSource::Ticks => format!(
            "clock ticks ({} ms, fallback)",
            usage.cpu_resolution_s * 1e3
        ),
    }
}

fn first_run() -> u32 {
    1
}

/// The idle scenario's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    pub clients: u32,
    pub hold_s: f64,
    /// Server RSS before any client connected, after all did, and after the hold.
    pub server_rss_before: Option<u64>,
    pub server_rss_loaded: Option<u64>,
    pub server_rss_after_hold: Option<u64>,
    /// (RSS after the hold - RSS before) / clients.
    pub server_bytes_per_client: Option<f64>,
    /// Server CPU seconds during the hold (idle clients should cost none).
    pub server_cpu_s_during_hold: Option<f64>,
    /// Each server process's CPU during the hold and RSS after it, when --server-pid
    /// lists several (memory per client above is the sum over them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_by_pid: Vec<PidUsage>,
    /// loadgen's own usage during the hold.
    pub loadgen: ProcUsage,
    /// What the churners did during the hold (`--churners`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnResult>,
}

/// The churn of an idle run: cycles sent, and the servers' peak memory meanwhile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnResult {
    /// PART + JOIN pairs sent.
    pub cycles: u64,
    /// Cycles not sent: the churner's connection was broken or its output full.
    pub failed_sends: u64,
    /// Highest RSS of the servers (summed) sampled during the hold.
    pub server_rss_peak: Option<u64>,
}

impl IdleResult {
    /// `before`, `loaded` and `held` are the servers' samples summed; `hold_usage`
    /// their usage from loaded to held, each process's part in it.
    pub fn new(
        clients: u32,
        hold_s: f64,
        before: Option<&ProcSample>,
        loaded: Option<&ProcSample>,
        held: Option<&ProcSample>,
        hold_usage: Option<&ServerUsage>,
        loadgen: ProcUsage,
    ) -> Self {
        let per_client = match (before, held) {
            (Some(b), Some(h)) if clients > 0 => {
                Some((h.rss_bytes as f64 - b.rss_bytes as f64) / clients as f64)
            }
            _ => None,
        };
        Self {
            clients,
            hold_s,
            server_rss_before: before.map(|s| s.rss_bytes),
            server_rss_loaded: loaded.map(|s| s.rss_bytes),
            server_rss_after_hold: held.map(|s| s.rss_bytes),
            server_bytes_per_client: per_client,
            server_cpu_s_during_hold: match (loaded, held) {
                (Some(l), Some(h)) => Some(h.cpu_s - l.cpu_s),
                _ => None,
            },
            server_by_pid: hold_usage.map(ServerUsage::parts).unwrap_or_default(),
            loadgen,
            churn: None,
        }
    }
}

impl Report {
    pub fn new(scenario: &Scenario, common: &CommonArgs) -> Self {
        let mut params = serde_json::to_value(common).unwrap_or_default();
        let extra = match scenario {
            Scenario::Fanout { traffic, senders } => {
                serde_json::json!({ "traffic": traffic, "senders": senders })
            }
            Scenario::Rooms {
                traffic,
                channels,
                senders,
            } => {
                serde_json::json!({ "traffic": traffic, "channels": channels, "senders_per_channel": senders })
            }
            Scenario::Connect => serde_json::json!({}),
            Scenario::Idle {
                hold,
                channels,
                churn,
            } => {
                serde_json::json!({ "hold_s": hold.as_secs_f64(), "channels": channels, "churn": churn })
            }
        };
        if let (Some(p), serde_json::Value::Object(e)) = (params.as_object_mut(), extra) {
            p.extend(e);
        }
        Self {
            tool: format!("loadgen {}", env!("CARGO_PKG_VERSION")),
            label: common.label.clone(),
            scenario: scenario.name().to_string(),
            params,
            server_version: None,
            clients_per_addr: Vec::new(),
            kernel: kernel_version(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            steps: Vec::new(),
            idle: None,
            max_rate: None,
            errors: Vec::new(),
            error_count: 0,
            ok: false,
        }
    }

    /// Adds a finished step, numbering its run among the steps with its label.
    pub fn push_step(&mut self, mut step: StepResult) {
        step.repeat = 1 + self.steps.iter().filter(|s| s.label == step.label).count() as u32;
        self.steps.push(step);
    }

    /// Takes every thread's errors and late deliveries (late ones leave `lost`: they
    /// were delayed, not lost), and decides `ok`.
    pub fn finish(&mut self, ends: &[ThreadEnd]) {
        for end in ends {
            self.error_count += end.error_count;
            for e in &end.errors {
                if self.errors.len() < crate::conn::MAX_KEPT_ERRORS {
                    self.errors.push(e.clone());
                }
            }
            for (step, late) in self.steps.iter_mut().zip(&end.late_by_step) {
                step.late += late;
            }
        }
        for step in &mut self.steps {
            step.lost = step.lost.saturating_sub(step.late);
        }
        let steps_ok = if self.max_rate.is_some() {
            // A search probes past the limit on purpose; its failing steps are expected.
            true
        } else {
            self.steps.iter().all(|s| s.passed)
        };
        self.ok = self.error_count == 0 && steps_ok;
    }

    /// A name for plots and tables: the `--label`, else the file it was read from
    /// (`origin`), else the scenario.
    pub fn name(&self, origin: Option<&Path>) -> String {
        self.label.clone().unwrap_or_else(|| {
            origin
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.scenario.clone())
        })
    }
}

/// `uname -sr`.
fn kernel_version() -> String {
    // SAFETY: utsname is plain data filled in by uname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {}", field(&uts.sysname), field(&uts.release))
}

/// Microseconds as a short human figure: `87us`, `1.23ms`, `2.5s`.
pub fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// One line after each step, so a long step run shows its progress.
pub fn print_step_line(step: &StepResult, passed: bool) {
    eprintln!(
        "step {} (run {}): sent {:.0}/s, delivered {:.0}/s, p50 {}, p99 {}, max {}, missing {} -> {}",
        step.label,
        step.repeat,
        step.sent_per_s,
        step.throughput_per_s,
        format_us(step.latency.p50_us),
        format_us(step.latency.p99_us),
        format_us(step.latency.max_us),
        step.lost,
        if passed { "pass" } else { "FAIL" },
    );
}

/// The final report on stdout: wrk2-style distribution, a table of steps, and loud
/// warnings for loss, errors and loadgen saturation.
pub fn print_report(report: &Report) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loadgen {} against {} ({}), {}",
        report.scenario,
        report
            .params
            .get("addr")
            .and_then(|a| a.as_str())
            .unwrap_or("?"),
        report
            .server_version
            .as_deref()
            .unwrap_or("version unknown"),
        report.kernel
    );
    if report.clients_per_addr.len() > 1 {
        let spread: Vec<String> = report
            .clients_per_addr
            .iter()
            .map(|a| format!("{} {}", a.addr, a.clients))
            .collect();
        let _ = writeln!(out, "clients per server: {}", spread.join(", "));
    }
    let show_distribution = report.steps.len() <= 3;
    for step in &report.steps {
        if show_distribution && step.latency.count > 0 {
            let what = if step.label == "connect" {
                "time to 001"
            } else {
                "latency from scheduled send"
            };
            let _ = writeln!(
                out,
                "\n  {} - Latency Distribution (HdrHistogram - {what})",
                step.label
            );
            let l = &step.latency;
            for (pct, v) in [
                ("50.000%", l.p50_us),
                ("75.000%", l.p75_us),
                ("90.000%", l.p90_us),
                ("99.000%", l.p99_us),
                ("99.900%", l.p999_us),
                ("99.990%", l.p9999_us),
                ("99.999%", l.p99999_us),
                ("100.000%", l.max_us),
            ] {
                let _ = writeln!(out, " {pct:>8}  {:>9}", format_us(v));
            }
            let _ = writeln!(
                out,
                "  {} latencies recorded; mean {}, stdev {}",
                l.count,
                format_us(l.mean_us),
                format_us(l.stdev_us)
            );
        }
    }
    if !report.steps.is_empty() {
        let _ = writeln!(
            out,
            "\n(thrpt/s: deliveries per second; for connect, connections per second; gap: the longest time with no delivery)"
        );
        let _ = writeln!(
            out,
            "{:<17} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>5} {:>5} {:>10} {:>10} {:>8}",
            "step",
            "sent/s",
            "thrpt/s",
            "p50",
            "p99",
            "p99.9",
            "max",
            "gap",
            "lost",
            "late",
            "dup",
            "reord",
            "srv us/dl",
            "srv RSS",
            "lg cores"
        );
        for s in &report.steps {
            let _ = writeln!(
            out,
            "{:<17} {:>10.0} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>5} {:>5} {:>10} {:>10} {:>8.2}{}",
            step_name(report, s),
            s.sent_per_s,
            s.throughput_per_s,
            format_us(s.latency.p50_us),
            format_us(s.latency.p99_us),
            format_us(s.latency.p999_us),
            format_us(s.latency.max_us),
            format_us(s.longest_gap_us),
            s.lost,
            s.late,
            s.counts.duplicates,
            s.counts.reordered,
            s.server_cpu_us_per_delivery.map_or("-".to_string(), |v| format!("{v:.2}")),
            s.server.map_or("-".to_string(), |v| format_bytes(v.rss_bytes as f64)),
            s.loadgen.cores,
            if s.passed { "" } else { "  FAIL" },
        );
        }
        if let Some(step) = report.steps.first() {
            let _ = writeln!(
                out,
                "CPU time: loadgen from {}{}",
                cpu_source_name(&step.loadgen),
                step.server.map_or(String::new(), |s| format!(
                    ", server from {}",
                    cpu_source_name(&s)
                ))
            );
        }
        if report.steps.iter().any(|s| !s.server_by_pid.is_empty()) {
            let _ = writeln!(
                out,
                "\nserver processes (srv us/dl and srv RSS above are their sum):"
            );
            for s in &report.steps {
                let _ = writeln!(
                    out,
                    "{:<17} {}",
                    step_name(report, s),
                    pid_parts(&s.server_by_pid)
                );
            }
        }
    }
    if let Some(idle) = &report.idle {
        let _ = writeln!(
            out,
            "idle: {} clients held {:.0}s",
            idle.clients, idle.hold_s
        );
        match (
            idle.server_rss_before,
            idle.server_rss_after_hold,
            idle.server_bytes_per_client,
        ) {
            (Some(b), Some(a), Some(per)) => {
                let _ = writeln!(
                    out,
                    "  server RSS {} -> {}: {} per idle client; server CPU during hold {:.3}s",
                    format_bytes(b as f64),
                    format_bytes(a as f64),
                    format_bytes(per),
                    idle.server_cpu_s_during_hold.unwrap_or(0.0)
                );
            }
            _ => {
                let _ = writeln!(out, "  (server memory needs --server-pid)");
            }
        }
        if !idle.server_by_pid.is_empty() {
            let _ = writeln!(out, "  by process: {}", pid_parts(&idle.server_by_pid));
        }
        if let Some(churn) = &idle.churn {
            let _ = writeln!(
                out,
                "  churn: {} PART+JOIN cycles sent ({} not sent); server RSS peak {}",
                churn.cycles,
                churn.failed_sends,
                churn.server_rss_peak.map_or_else(
                    || "(needs --server-pid)".to_owned(),
                    |rss| format_bytes(rss as f64)
                )
            );
        }
    }
    if let Some(max) = report.max_rate {
        let _ = writeln!(
            out,
            "\nsaturation search: highest passing rate {max:.0} messages/s"
        );
    }
    for s in &report.steps {
        if s.lost > 0 || s.counts.duplicates > 0 || s.counts.unexpected() > 0 {
            let _ = writeln!(
                out,
                "\n!!! {}: LOST {} of {} expected deliveries, {} duplicated, {} unexpected !!!",
                s.label,
                s.lost,
                s.counts.expected,
                s.counts.duplicates,
                s.counts.unexpected()
            );
        }
        if s.late > 0 {
            let _ = writeln!(
                out,
                "\n!!! {}: LATE {} of {} expected deliveries arrived after the grace period (delayed, not lost) !!!",
                s.label, s.late, s.counts.expected
            );
        }
        if s.fell_behind_steadily {
            let _ = writeln!(
                out,
                "HINT: {}: deliveries fell behind the schedule at a steady pace (mean latency {} early in the measured window, {} at its end): the server appears to rate-limit senders (flood control). Turn it off for a benchmark: ringchat --flood-rate 0; ngircd MaxPenaltyTime = 0; InspIRCd <connect commandrate=... fakelag=\"off\">. (Or the server is saturated: check its CPU with --server-pid.)",
                s.label,
                format_us(s.backlog_early_mean_us),
                if s.backlog_late_mean_us > 0.0 {
                    format_us(s.backlog_late_mean_us)
                } else {
                    "none arrived within the grace period".to_string()
                }
            );
        }
        if s.loadgen_saturated {
            let _ = writeln!(
                out,
                "WARNING: {}: loadgen saturated: {}: these figures may measure loadgen, not the server",
                s.label,
                s.loadgen_saturation
                    .as_deref()
                    .unwrap_or("(reason not recorded)"),
            );
        }
    }
    if report.error_count > 0 {
        let _ = writeln!(out, "\n!!! {} errors; the first ones:", report.error_count);
        for e in &report.errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if report.ok {
            "result: ok"
        } else {
            "result: FAILED"
        }
    );
    print!("{out}");
}

/// Each server process's part: `pid 123: 0.31 cores (54% of the CPU), RSS 12.0 MiB; ...`.
fn pid_parts(parts: &[PidUsage]) -> String {
    parts
        .iter()
        .map(|p| {
            format!(
                "pid {}: {:.2} cores ({:.0}% of the CPU), RSS {}",
                p.pid,
                p.usage.cores,
                p.cpu_share * 100.0,
                format_bytes(p.usage.rss_bytes as f64)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A step's label, with its run number when the report repeats steps.
fn step_name(report: &Report, step: &StepResult) -> String {
    if report.steps.iter().any(|s| s.repeat > 1) {
        format!("{} #{}", step.label, step.repeat)
    } else {
        step.label.clone()
    }
}

/// One row per step of each report: the comparison script's table. Rows are named
/// by each report's label, else the file it came from (the paths beside `reports`).
pub fn summary_table(reports: &[(PathBuf, Report)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:<17} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9} {:>8}",
        "run",
        "step",
        "thrpt/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "lost",
        "srv us/op",
        "srv cores",
        "lg cores"
    );
    for (path, r) in reports {
        let name = r.name(Some(path));
        for s in &r.steps {
            let _ = writeln!(
                out,
                "{:<18} {:<17} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9} {:>8.2}{}",
                name,
                step_name(r, s),
                s.throughput_per_s,
                format_us(s.latency.p50_us),
                format_us(s.latency.p99_us),
                format_us(s.latency.p999_us),
                format_us(s.latency.max_us),
                s.lost,
                s.server_cpu_us_per_delivery
                    .map_or("-".to_string(), |v| format!("{v:.2}")),
                s.server
                    .map_or("-".to_string(), |v| format!("{:.2}", v.cores)),
                s.loadgen.cores,
                if s.passed { "" } else { "  FAIL" },
            );
        }
        if let Some(idle) = &r.idle {
            let _ = writeln!(
                out,
                "{:<18} {:<17} {:>12} per idle client: {}",
                name,
                "idle",
                idle.clients,
                idle.server_bytes_per_client
                    .map_or("-".to_string(), format_bytes)
            );
        }
    }
    out
}

/// Bytes as `12.3 MiB`.
pub fn format_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < units.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", units[unit])
}

/// The HdrHistogram percentile distribution in milliseconds, in the format of
/// `outputPercentileDistribution` (what wrk2 prints and HdrHistogram's plotter reads).
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{:12.3} {:2.12} {:10} {:14.2}",
                    ms(v.value_iterated_to()),
                    q,
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(
                    out,
                    "{:12.3} {:2.12} {:10}",
                    ms(v.value_iterated_to()),
                    q,
                    total
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    // The sub-bucket count is the power of two that holds 2 * 10^sigfig values.
    let sub_buckets = (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// Writes the JSON and .hgrm files asked for.
pub fn write_files(report: &Report, json: Option<&Path>, hgrm: Option<&Path>) -> Result<()> {
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = hgrm {
        let several = report.steps.len() > 1;
        for step in &report.steps {
            let file = if several {
                step_path(path, step)
            } else {
                path.to_path_buf()
            };
            std::fs::write(&file, &step.hgrm)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
    }
    Ok(())
}

/// `out.hgrm` -> `out-1000.hgrm` for the step at 1000 messages/s.
fn step_path(path: &Path, step: &StepResult) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hgrm".into());
    let tag = if step.target_rate > 0.0 {
        format!("{}", step.target_rate)
    } else {
        step.label.clone()
    };
    path.with_file_name(format!("{stem}-{tag}.{ext}"))
}

/// Reads the percentile spectrum back from a `.hgrm` file: `[quantile, microseconds]`.
pub fn read_hgrm(text: &str) -> Vec<[f64; 2]> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let value_ms: f64 = words.next()?.parse().ok()?;
            let quantile: f64 = words.next()?.parse().ok()?;
            Some([quantile, value_ms * 1000.0])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_round_trips_through_the_reader() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 100).expect("in range"); // 0.1 us .. 1 ms
        }
        let text = hgrm_text(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(
            text.contains("#[Max     =        1.000, Total count    =        10000]"),
            "{text}"
        );
        let points = read_hgrm(&text);
        assert!(points.len() > 50);
        assert_eq!(points.last().map(|p| p[0]), Some(1.0));
        let p50 = points
            .iter()
            .find(|p| p[0] >= 0.5)
            .map(|p| p[1])
            .unwrap_or_default();
        assert!((p50 - 500.0).abs() < 2.0, "{p50}");
    }

    #[test]
    fn step_files_are_named_by_rate() {
        let mut r = Recorder::default();
        r.begin_step(1, (0, 1));
        let step = StepResult::messages(1000.0, 1.0, &r, None, ProcUsage::default(), 0, 0);
        assert_eq!(
            step_path(Path::new("/tmp/x.hgrm"), &step),
            PathBuf::from("/tmp/x-1000.hgrm")
        );
        assert!(step.passed);
    }

    #[test]
    fn formats_figures() {
        assert_eq!(format_us(87.4), "87us");
        assert_eq!(format_us(1234.0), "1.23ms");
        assert_eq!(format_us(2_500_000.0), "2.50s");
        assert_eq!(format_bytes(2048.0), "2.0 KiB");
    }
}
