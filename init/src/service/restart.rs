//! The restart policy: a service that fails waits longer each time (`backoff`), and one that
//! ran long enough before it exited starts again without penalty.

use super::state::State;
use crate::config::Restart;
use std::time::{Duration, Instant};

pub use lightwhale_types::service::backoff;

/// A service that ran at least this long before exiting is restarted without penalty.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Pure: the state and failure count after a failed start or an exit.
pub fn after_failure(restart: Restart, failures: u32, now: Instant) -> (State, u32) {
    match restart {
        Restart::Never => (State::Done, failures),
        Restart::Always => (State::Backoff { until: now + backoff(failures) }, failures + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_or_stop() {
        let t0 = Instant::now();
        assert_eq!(after_failure(Restart::Never, 3, t0), (State::Done, 3));
        assert_eq!(after_failure(Restart::Always, 0, t0), (State::Backoff { until: t0 + Duration::from_secs(1) }, 1));
        assert_eq!(after_failure(Restart::Always, 3, t0), (State::Backoff { until: t0 + Duration::from_secs(8) }, 4));
    }
}
