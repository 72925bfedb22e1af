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

/// Unix milliseconds of a `server-time` value (`2026-11-25T09:00:00.123Z`; the
/// fraction may have 0 to 3 digits), as CHATHISTORY's `timestamp=` carries it.
/// `None` for anything else.
pub fn parse_server_time(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, clock) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = number(date_parts.next()?, 4)?;
    let month: u32 = number(date_parts.next()?, 2)?;
    let day: u32 = number(date_parts.next()?, 2)?;
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = clock.splitn(3, ':');
    let hour: u64 = number(clock_parts.next()?, 2)?;
    let minute: u64 = number(clock_parts.next()?, 2)?;
    let second: u64 = number(clock_parts.next()?, 2)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let millis: u64 = match fraction.len() {
        0 => 0,
        1..=3 => number::<u64>(fraction, fraction.len())? * 10u64.pow(3 - fraction.len() as u32),
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000 + millis)
}

/// `text` as a number of exactly `digits` ASCII digits.
fn number<T: std::str::FromStr>(text: &str, digits: usize) -> Option<T> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn server_time_parses_back_to_its_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_061_200_123);
        assert_eq!(parse_server_time(&server_time(t)), Some(1_764_061_200_123));
        assert_eq!(
            parse_server_time("2000-02-29T00:00:01Z"),
            Some(951_782_401_000)
        );
        assert_eq!(
            parse_server_time("2000-02-29T00:00:01.5Z"),
            Some(951_782_401_500)
        );
        for bad in [
            "",
            "2000-02-29",
            "2000-13-01T00:00:00Z",
            "2000-02-29T00:00:00.1234Z",
            "x",
        ] {
            assert_eq!(parse_server_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn both_formats() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_061_200_123);
        assert_eq!(human(t), "2025-11-25 09:00:00 UTC");
        assert_eq!(server_time(t), "2025-11-25T09:00:00.123Z");
    }
}
