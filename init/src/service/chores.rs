//! What the supervisor does every half minute beside supervising: the default-password
//! notices kept in step with /etc/shadow, and the persistence disk's reserve made again once
//! there is room for it.

use crate::persist::reserve;
use crate::service::password_notices::Notices;
use lightwhale_types::space::{Reserve, RESERVE_FILE, SPACE_FACTS};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the chores run.
pub const EVERY: Duration = Duration::from_secs(30);

pub struct Chores {
    notices: Notices,
    /// None without a persistence disk.
    reserve: Option<Reserve>,
    done_at: Option<Instant>,
}

impl Chores {
    pub fn new(notices: Notices, reserve: Option<Reserve>) -> Chores {
        Chores { notices, reserve, done_at: None }
    }

    /// Runs them when [`EVERY`] has passed since the last time (and the first time).
    pub fn run_when_due(&mut self, now: Instant) {
        if self.done_at.is_some_and(|t| now.saturating_duration_since(t) < EVERY) {
            return;
        }
        self.done_at = Some(now);
        self.notices.refresh();
        if let Some(r) = self.reserve.as_mut() {
            if reserve::recheck(Path::new(RESERVE_FILE), r) {
                if let Err(e) = crate::facts::write(SPACE_FACTS, r) {
                    log::warn!("writing {SPACE_FACTS}: {e}");
                }
            }
        }
    }
}
