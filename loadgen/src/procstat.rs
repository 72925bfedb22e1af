//! CPU time and memory of a process, read from /proc (the server's, or loadgen's own).
//!
//! Owns: parsing `/proc/PID/stat`. Must not: be called per message (a few times per
//! step is its budget).

use std::io;

use anyhow::Context;

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

/// Samples the server process of `--server-pid`, if any, with the error naming the flag.
pub fn sample_server(pid: Option<u32>) -> anyhow::Result<Option<ProcSample>> {
    match pid {
        Some(pid) => Ok(Some(sample(Some(pid)).with_context(|| {
            format!("cannot read /proc/{pid}/stat (--server-pid)")
        })?)),
        None => Ok(None),
    }
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
    fn samples_itself() {
        let s = sample(None).expect("own /proc/self/stat");
        assert!(s.rss_bytes > 0);
    }
}
