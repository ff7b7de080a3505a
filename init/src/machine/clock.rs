//! The clock at boot: never earlier than the image's build date. A machine whose RTC
//! battery is flat boots in 1970 or 2000, and then every TLS certificate looks "not yet
//! valid" to Docker until time sync has stepped the clock; setting it forward to the build
//! date before the services start makes that window harmless. Time sync does the rest.

pub use lightwhale_types::clock::utc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pure: the time to set, if `now` (seconds since 1970) is before `floor`.
pub fn forward_to(now: u64, floor: u64) -> Option<u64> {
    (floor > 0 && now < floor).then_some(floor)
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
    fn only_forward_and_only_with_a_known_date() {
        assert_eq!(forward_to(100, 200), Some(200));
        assert_eq!(forward_to(300, 200), None);
        assert_eq!(forward_to(200, 200), None);
        assert_eq!(forward_to(100, 0), None, "no build date known: leave the clock alone");
    }
}
