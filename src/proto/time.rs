//! Wall-clock times as IRC shows them, without a date crate: the arithmetic is one
//! small, tested function.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-25 09:00:00 UTC`, for RPL_CREATED and TIME.
pub fn human(time: SystemTime) -> String {
    let (date, secs, _) = split(time);
    format!(
        "{date} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-11-25T09:00:00.123Z`, the IRCv3 `server-time` tag value.
pub fn server_time(time: SystemTime) -> String {
    let (date, secs, millis) = split(time);
    format!(
        "{date}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The date as `YYYY-MM-DD`, the seconds into that day, and the milliseconds.
fn split(time: SystemTime) -> (String, u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        secs % 86_400,
        since.subsec_millis(),
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn both_formats() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_061_200_123);
        assert_eq!(human(t), "2025-11-25 09:00:00 UTC");
        assert_eq!(server_time(t), "2025-11-25T09:00:00.123Z");
    }
}
