//! What the init's supervision and the tools that supervise their own children share.

use std::time::Duration;

/// Restart delay after `failures` quick exits in a row: 1 s, 2 s, 4 s ... up to 60 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (0..9).map(|f| super::backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(super::backoff(100).as_secs(), 60);
    }
}
