//! CPU time and memory of a process, read from /proc (the servers', or loadgen's own).
//!
//! CPU time comes from the per-thread scheduler statistics (`/proc/PID/task/*/schedstat`,
//! whose first field is the nanoseconds the thread spent on a CPU), summed over the
//! threads: a short step at a low rate uses a few milliseconds of server CPU, which the
//! clock-tick counters of `/proc/PID/stat` (utime+stime, 10 ms each) can only round to
//! 0, 10 or 20 ms. When a kernel has no schedstat files (built without
//! CONFIG_SCHED_INFO), the tick counters are the fallback, and every figure says which
//! source it came from and its resolution. Limits of the ns source: a thread that
//! exits is no longer counted (ringchat's and loadgen's threads live for the whole
//! run), and a thread on a CPU at the moment of reading is counted up to its last
//! context switch or scheduler tick.
//!
//! Owns: parsing `/proc/PID/stat` and `schedstat`, and summing the server processes of
//! `--server-pid` (one per node of a cluster) while keeping each one's part. Must not:
//! be called per message (a few times per step is its budget: one file per thread).

use std::io;

use anyhow::{bail, Context};

use serde::{Deserialize, Serialize};

/// Where a CPU time came from, which decides the smallest difference it can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// `/proc/PID/task/*/schedstat`: nanoseconds on a CPU, summed over threads.
    Schedstat,
    /// utime+stime of `/proc/PID/stat` in clock ticks: the fallback, and what results
    /// written before the source was recorded used.
    #[default]
    Ticks,
}

impl CpuSource {
    /// The smallest step of one reading, in seconds.
    pub fn resolution_s(self) -> f64 {
        match self {
            CpuSource::Schedstat => 1e-9,
            CpuSource::Ticks => 1.0 / clock_ticks_per_s(),
        }
    }
}

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// CPU seconds (user plus system) of all its threads so far.
    pub cpu_s: f64,
    /// Where `cpu_s` came from.
    pub cpu_source: CpuSource,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>` (`None`: loadgen itself): CPU from schedstat when the kernel
/// has it, else from the tick counters; RSS from `stat`.
pub fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let path = format!("{dir}/stat");
    let text = std::fs::read_to_string(&path)?;
    let mut sample = parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })?;
    if let Some(ns) = schedstat_cpu_ns(&dir)? {
        sample.cpu_s = ns as f64 / 1e9;
        sample.cpu_source = CpuSource::Schedstat;
    }
    Ok(sample)
}

/// The nanoseconds on a CPU of every thread of the process in `dir`, or `None` when
/// the kernel has no schedstat files. Cost: one directory listing and one small read
/// per thread.
fn schedstat_cpu_ns(dir: &str) -> io::Result<Option<u64>> {
    if !std::path::Path::new(&format!("{dir}/schedstat")).exists() {
        return Ok(None);
    }
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("{dir}/task"))? {
        let path = entry?.path().join("schedstat");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                total += parse_schedstat(&text).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: unexpected format", path.display()),
                    )
                })?;
            }
            // The thread exited between the listing and the read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(total))
}

/// The first field of a schedstat line: nanoseconds on a CPU (then run-queue wait
/// and time slices, which are not used).
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the tick counters.
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Parses the stat line. The command name is in parentheses and may contain spaces,
/// so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcSample> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime 15, rss 24.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / clock_ticks_per_s(),
        cpu_source: CpuSource::Ticks,
        rss_bytes: rss_pages * page,
    })
}

/// One reading of every server process of `--server-pid`, in the order given.
#[derive(Debug, Clone, Default)]
pub struct ServerSample {
    by_pid: Vec<(u32, ProcSample)>,
}

impl ServerSample {
    /// The processes together: CPU seconds and RSS summed (the whole cluster).
    pub fn total(&self) -> ProcSample {
        let mut sum = ProcSample {
            cpu_source: CpuSource::Schedstat,
            ..ProcSample::default()
        };
        for (_, s) in &self.by_pid {
            sum.cpu_s += s.cpu_s;
            sum.rss_bytes += s.rss_bytes;
            sum.cpu_source = coarser(sum.cpu_source, s.cpu_source);
        }
        sum
    }
}

/// Samples the server processes of `--server-pid` (None when there are none), with
/// the error naming the flag. A pid listed twice would be counted twice: refused.
pub fn sample_servers(pids: &[u32]) -> anyhow::Result<Option<ServerSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut by_pid = Vec::with_capacity(pids.len());
    for (i, &pid) in pids.iter().enumerate() {
        if pids[..i].contains(&pid) {
            bail!("--server-pid lists {pid} twice");
        }
        let s =
            sample(Some(pid)).with_context(|| format!("cannot read /proc/{pid} (--server-pid)"))?;
        by_pid.push((pid, s));
    }
    Ok(Some(ServerSample { by_pid }))
}

/// The coarser of two sources: a sum or difference is only as fine as its coarsest part.
fn coarser(a: CpuSource, b: CpuSource) -> CpuSource {
    if a == CpuSource::Ticks || b == CpuSource::Ticks {
        CpuSource::Ticks
    } else {
        CpuSource::Schedstat
    }
}

/// What a process used between two samples `wall_s` seconds apart.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProcUsage {
    /// CPU seconds used in the window.
    pub cpu_s: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cores: f64,
    /// RSS at the end of the window.
    pub rss_bytes: u64,
    /// Where `cpu_s` came from (results from before it was recorded: ticks).
    #[serde(default)]
    pub cpu_source: CpuSource,
    /// The smallest step of `cpu_s`, seconds: the resolution of one reading (a
    /// difference of two readings is uncertain by up to one step).
    #[serde(default = "tick_resolution_s")]
    pub cpu_resolution_s: f64,
}

impl Default for ProcUsage {
    fn default() -> Self {
        Self {
            cpu_s: 0.0,
            cores: 0.0,
            rss_bytes: 0,
            cpu_source: CpuSource::default(),
            cpu_resolution_s: tick_resolution_s(),
        }
    }
}

/// What results written before `cpu_resolution_s` existed were measured in.
fn tick_resolution_s() -> f64 {
    CpuSource::Ticks.resolution_s()
}

impl ProcUsage {
    /// The usage between `start` and `end`.
    pub fn between(start: &ProcSample, end: &ProcSample, wall_s: f64) -> Self {
        let cpu_s = (end.cpu_s - start.cpu_s).max(0.0);
        let cpu_source = coarser(start.cpu_source, end.cpu_source);
        Self {
            cpu_s,
            cores: if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 },
            rss_bytes: end.rss_bytes,
            cpu_source,
            cpu_resolution_s: cpu_source.resolution_s(),
        }
    }
}

/// One server process's part of a window's usage (`--server-pid` with several pids).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PidUsage {
    pub pid: u32,
    #[serde(flatten)]
    pub usage: ProcUsage,
    /// Its fraction of the processes' CPU seconds together (0 when none used any).
    pub cpu_share: f64,
}

/// What the server processes used in a window: their sum and each one's part.
#[derive(Debug, Clone, Default)]
pub struct ServerUsage {
    pub total: ProcUsage,
    /// One entry per process, in the order of `--server-pid`.
    pub by_pid: Vec<PidUsage>,
}

impl ServerUsage {
    /// The usage between two samples of the same processes `wall_s` seconds apart.
    pub fn between(start: &ServerSample, end: &ServerSample, wall_s: f64) -> Self {
        let total = ProcUsage::between(&start.total(), &end.total(), wall_s);
        let by_pid = start
            .by_pid
            .iter()
            .zip(&end.by_pid)
            .map(|((pid, a), (_, b))| {
                let usage = ProcUsage::between(a, b, wall_s);
                PidUsage {
                    pid: *pid,
                    usage,
                    cpu_share: if total.cpu_s > 0.0 {
                        usage.cpu_s / total.cpu_s
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        Self { total, by_pid }
    }

    /// Each process's part, or nothing for a single process (its part is the total).
    pub fn parts(&self) -> Vec<PidUsage> {
        if self.by_pid.len() > 1 {
            self.by_pid.clone()
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).expect("parses");
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert!((s.cpu_s - 300.0 / ticks).abs() < 1e-9);
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        assert_eq!(s.rss_bytes, 2048 * page);
    }

    #[test]
    fn sums_several_servers_and_keeps_each_part() {
        let sample = |pid, cpu_s, rss_bytes| {
            (
                pid,
                ProcSample {
                    cpu_s,
                    cpu_source: CpuSource::Schedstat,
                    rss_bytes,
                },
            )
        };
        let start = ServerSample {
            by_pid: vec![sample(1, 10.0, 100), sample(2, 20.0, 200)],
        };
        let end = ServerSample {
            by_pid: vec![sample(1, 13.0, 150), sample(2, 21.0, 250)],
        };
        let usage = ServerUsage::between(&start, &end, 2.0);
        assert_eq!(usage.total.cpu_s, 4.0);
        assert_eq!(usage.total.cores, 2.0);
        assert_eq!(usage.total.rss_bytes, 400);
        let parts = usage.parts();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].pid, parts[0].cpu_share), (1, 0.75));
        assert_eq!((parts[1].pid, parts[1].usage.rss_bytes), (2, 250));
        assert_eq!(usage.total.cpu_source, CpuSource::Schedstat);
        assert_eq!(usage.total.cpu_resolution_s, 1e-9);
    }

    #[test]
    fn a_tick_reading_makes_the_difference_coarse() {
        let fine = ProcSample {
            cpu_s: 1.0,
            cpu_source: CpuSource::Schedstat,
            rss_bytes: 0,
        };
        let coarse = ProcSample {
            cpu_source: CpuSource::Ticks,
            ..fine
        };
        let usage = ProcUsage::between(&fine, &coarse, 1.0);
        assert_eq!(usage.cpu_source, CpuSource::Ticks);
        assert_eq!(usage.cpu_resolution_s, 1.0 / clock_ticks_per_s());
        let old: ProcUsage =
            serde_json::from_str(r#"{"cpu_s": 0.02, "cores": 0.01, "rss_bytes": 1}"#)
                .expect("a result from before the source was recorded");
        assert_eq!(old.cpu_source, CpuSource::Ticks);
        assert_eq!(old.cpu_resolution_s, 1.0 / clock_ticks_per_s());
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat("17430107 2552859 56\n"), Some(17_430_107));
        assert_eq!(parse_schedstat(""), None);
    }

    /// CPU time of the calling thread from its own clock (`CLOCK_THREAD_CPUTIME_ID`).
    fn thread_cpu_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// A thread does a known amount of work (23.456789 ms of CPU by its own clock),
    /// then waits, so the reading sees it alive and off the CPU. The reader must show
    /// that work to well under one clock tick, which the tick counters cannot.
    #[test]
    fn reads_a_busy_thread_at_nanosecond_resolution() {
        if !std::path::Path::new("/proc/self/schedstat").exists() {
            let s = sample(None).expect("own /proc/self/stat");
            assert_eq!(s.cpu_source, CpuSource::Ticks, "the labelled fallback");
            return;
        }
        const WORK_NS: u64 = 23_456_789;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = std::thread::spawn(move || {
            let mut spins = 0u64;
            while thread_cpu_ns() < WORK_NS {
                spins = std::hint::black_box(spins + 1);
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            done_tx.send((tid, thread_cpu_ns())).expect("main waits");
            let _ = release_rx.recv();
        });
        let (tid, work_ns) = done_rx.recv().expect("the busy thread reports");
        let own = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
            .ok()
            .and_then(|t| parse_schedstat(&t))
            .expect("the busy thread's schedstat");
        let after = sample(None).expect("readable");
        release_tx.send(()).expect("the busy thread waits");
        busy.join().expect("the busy thread ends");

        assert_eq!(after.cpu_source, CpuSource::Schedstat);
        let tick_ns = (1e9 / clock_ticks_per_s()) as u64;
        // The thread's schedstat and its own clock count the same nanoseconds: they
        // differ by far less than a tick (a tick reading would be off by up to 10 ms).
        assert!(
            own.abs_diff(work_ns) < tick_ns / 10,
            "schedstat {own} ns vs the thread's clock {work_ns} ns"
        );
        assert_ne!(own % tick_ns, 0, "{own} ns is a whole number of ticks");
        // The process's sum holds that work while the thread lives (test threads
        // that ran and exited meanwhile have left it: no difference is asserted).
        assert!(
            after.cpu_s * 1e9 >= own as f64,
            "process {} s < thread work {own} ns",
            after.cpu_s
        );
    }

    #[test]
    fn samples_real_processes_and_refuses_a_pid_twice() {
        let me = std::process::id();
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() } as u32;
        let both = sample_servers(&[me, parent])
            .expect("readable")
            .expect("some");
        assert_eq!(both.by_pid.len(), 2);
        assert!(both.total().rss_bytes > both.by_pid[0].1.rss_bytes);
        assert!(sample_servers(&[]).expect("none").is_none());
        let twice = sample_servers(&[me, me]).unwrap_err().to_string();
        assert!(twice.contains("twice"), "{twice}");
    }

    #[test]
    fn samples_itself() {
        let s = sample(None).expect("own /proc/self/stat");
        assert!(s.rss_bytes > 0);
    }
}
