//! Where the logs are and how big they grow: one file per service and one for the init
//! under /var/log, each capped with one rotation; the previous boot's under `previous/`.

use std::path::{Path, PathBuf};

pub const LOG_DIR: &str = "/var/log";
/// The init's own log (every line it also prints on the console).
pub const INIT_LOG: &str = "init";
/// Where the previous boot's logs are, when there is a persistence disk.
pub const PREVIOUS_DIR: &str = "/var/log/previous";
/// Per file; with one rotation a log takes at most twice this.
pub const CAP_BYTES: u64 = 1 << 20;

/// The log file of `name` (`dockerd`, or `init`).
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Pure: whether writing `incoming` bytes to a file of `size` goes over `cap` (then the
/// file is rotated first; a single write larger than the cap still goes in whole).
pub fn should_rotate(size: u64, incoming: u64, cap: u64) -> bool {
    size > 0 && size + incoming > cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_rule() {
        assert!(!should_rotate(0, 10, 5), "an empty file takes a big write whole");
        assert!(!should_rotate(3, 2, 5));
        assert!(should_rotate(4, 2, 5));
    }
}
