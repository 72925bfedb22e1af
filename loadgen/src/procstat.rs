//! CPU time and memory of a process, read from /proc (the servers', or loadgen's own).
//!
//! Owns: parsing `/proc/PID/stat`, and summing the server processes of `--server-pid`
//! (one per node of a cluster) while keeping each one's part. Must not: be called per
//! message (a few times per step is its budget).

use std::io;

use anyhow::{bail, Context};

use serde::{Deserialize, Serialize};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// User plus system CPU seconds of all its threads so far.
    pub cpu_s: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` (`None`: loadgen itself).
pub fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(&path)?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })
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
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / ticks,
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
        let mut sum = ProcSample::default();
        for (_, s) in &self.by_pid {
            sum.cpu_s += s.cpu_s;
            sum.rss_bytes += s.rss_bytes;
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
        let s = sample(Some(pid))
            .with_context(|| format!("cannot read /proc/{pid}/stat (--server-pid)"))?;
        by_pid.push((pid, s));
    }
    Ok(Some(ServerSample { by_pid }))
}

/// What a process used between two samples `wall_s` seconds apart.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcUsage {
    /// CPU seconds used in the window.
    pub cpu_s: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cores: f64,
    /// RSS at the end of the window.
    pub rss_bytes: u64,
}

impl ProcUsage {
    /// The usage between `start` and `end`.
    pub fn between(start: &ProcSample, end: &ProcSample, wall_s: f64) -> Self {
        let cpu_s = (end.cpu_s - start.cpu_s).max(0.0);
        Self {
            cpu_s,
            cores: if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 },
            rss_bytes: end.rss_bytes,
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
        let sample = |pid, cpu_s, rss_bytes| (pid, ProcSample { cpu_s, rss_bytes });
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
