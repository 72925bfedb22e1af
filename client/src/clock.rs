//! The local wall-clock time stamped on chat lines, as `HH:MM`.
//!
//! Uses libc's `localtime_r` rather than a date crate: the `time` crate refuses to
//! report the local offset once a process has several threads (ours always does), and
//! `chrono` would pull in a time-zone database reader for one `HH:MM`. `localtime_r`
//! applies the system's TZ rules, thread-safely, which is all a chat client needs.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current local time as `HH:MM`; UTC if the local time cannot be determined.
pub fn now_hhmm() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (hour, minute) = local_hour_minute(seconds).unwrap_or_else(|| utc_hour_minute(seconds));
    format_hhmm(hour, minute)
}

/// `HH:MM`, zero-padded.
pub fn format_hhmm(hour: u32, minute: u32) -> String {
    format!("{hour:02}:{minute:02}")
}

/// Hour and minute of `seconds` since the epoch in UTC.
fn utc_hour_minute(seconds: u64) -> (u32, u32) {
    let of_day = seconds % 86_400;
    ((of_day / 3600) as u32, (of_day % 3600 / 60) as u32)
}

/// Hour and minute of `seconds` since the epoch in the local time zone.
fn local_hour_minute(seconds: u64) -> Option<(u32, u32)> {
    let time = libc::time_t::try_from(seconds).ok()?;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for
    // the call, and localtime_r (unlike localtime) keeps no shared state for us to race on.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&time, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some((
        u32::try_from(tm.tm_hour).ok()?,
        u32::try_from(tm.tm_min).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_zero_padding() {
        assert_eq!(format_hhmm(9, 5), "09:05");
        assert_eq!(format_hhmm(23, 59), "23:59");
    }

    #[test]
    fn utc_fallback_is_correct() {
        assert_eq!(utc_hour_minute(0), (0, 0));
        assert_eq!(utc_hour_minute(86_400 + 3600 * 13 + 60 * 7 + 5), (13, 7));
    }

    #[test]
    fn local_time_is_a_valid_clock_reading() {
        let (hour, minute) = local_hour_minute(1_700_000_000).unwrap();
        assert!(hour < 24 && minute < 60);
        let now = now_hhmm();
        assert_eq!(now.len(), 5);
        assert_eq!(&now[2..3], ":");
    }
}
