//! The clock at boot: never earlier than the image's build date. A machine whose RTC
//! battery is flat boots in 1970 or 2000, and then every TLS certificate looks "not yet
//! valid" to Docker until time sync has stepped the clock; setting it forward to the build
//! date before the services start makes that window harmless. Time sync does the rest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pure: the time to set, if `now` (seconds since 1970) is before `floor`.
pub fn forward_to(now: u64, floor: u64) -> Option<u64> {
    (floor > 0 && now < floor).then_some(floor)
}

/// Pure: `YYYY-MM-DD HH:MM:SS UTC` for seconds since 1970 (days to civil date after
/// Howard Hinnant's algorithm; no time zone database in PID 1).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Sets the clock forward to `build_date` when it is behind; returns what it did.
pub fn not_before(build_date: u64) -> Result<Option<(u64, u64)>, nix::Error> {
    let now = now_secs();
    let Some(to) = forward_to(now, build_date) else { return Ok(None) };
    let ts = nix::sys::time::TimeSpec::from(Duration::from_secs(to));
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)?;
    Ok(Some((now, to)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_834_528), "2026-11-28 02:55:28 UTC");
    }

    #[test]
    fn only_forward_and_only_with_a_known_date() {
        assert_eq!(forward_to(100, 200), Some(200));
        assert_eq!(forward_to(300, 200), None);
        assert_eq!(forward_to(200, 200), None);
        assert_eq!(forward_to(100, 0), None, "no build date known: leave the clock alone");
    }
}
