//! A service's life as a pure state machine: waiting for its conditions, its setup
//! commands, running, backing off, stopping; what an exit means; what a re-check changes;
//! the order of the shutdown. The supervisor's loop drives it (`supervisor.rs`).

use super::restart::HEALTHY_RUN;
use nix::unistd::Pid;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Disabled,
    Waiting {
        since: Instant,
    },
    Setup {
        step: usize,
        pid: Pid,
    },
    Running {
        pid: Pid,
        since: Instant,
    },
    Backoff {
        until: Instant,
    },
    /// Asked to stop because its `only_if_exists` file went away; SIGKILL at `kill_at`.
    Stopping {
        pid: Pid,
        kill_at: Instant,
    },
    Done,
}

/// Pure: a unit in backoff waits for its conditions again once the delay is over.
pub fn tick(state: State, now: Instant) -> State {
    match state {
        State::Backoff { until } if now >= until => State::Waiting { since: now },
        s => s,
    }
}

/// What runs at `step` of a start: the setup commands in order, then the service (its
/// directories are made before step 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Setup(usize),
    Main,
}

/// Pure: step `step` of a service with `setup_len` setup commands.
pub fn step_at(setup_len: usize, step: usize) -> Step {
    if step < setup_len {
        Step::Setup(step)
    } else {
        Step::Main
    }
}

/// Pure: what an exit of the unit's process means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A setup command succeeded: go on with this step.
    Next(usize),
    /// A setup command failed.
    SetupFailed(usize),
    /// The service itself ended; `healthy` if it ran long enough to reset the backoff.
    Ended { healthy: bool },
    /// A service asked to stop (State::Stopping) has stopped.
    Stopped,
    /// Not the unit's current process.
    NotOurs,
}

pub fn on_exit(state: State, pid: Pid, success: bool, now: Instant) -> Exit {
    match state {
        State::Setup { step, pid: p } if p == pid => {
            if success {
                Exit::Next(step + 1)
            } else {
                Exit::SetupFailed(step)
            }
        }
        State::Running { pid: p, since } if p == pid => {
            Exit::Ended { healthy: now.saturating_duration_since(since) >= HEALTHY_RUN }
        }
        State::Stopping { pid: p, .. } if p == pid => Exit::Stopped,
        _ => Exit::NotOurs,
    }
}

/// Pure: the state `lightwhale status` shows for a unit.
pub fn state_name(state: &State) -> &'static str {
    match state {
        State::Disabled => "disabled",
        State::Waiting { .. } => "waiting",
        State::Setup { .. } => "starting",
        State::Running { .. } => crate::facts::SERVICE_RUNNING,
        State::Backoff { .. } => "restarting",
        State::Stopping { .. } => "stopping",
        State::Done => "stopped",
    }
}

/// What a re-check (RECHECK_SIGNAL) does to a service with `only_if_exists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Start,
    Stop,
    Keep,
}

/// Pure: start a service whose file appeared, stop one whose file went away; a service
/// that is already on its way (or finished for good) is left alone.
pub fn change_for(configured: bool, state: &State) -> Change {
    match (configured, state) {
        (true, State::Disabled) => Change::Start,
        (false, State::Disabled | State::Stopping { .. } | State::Done) => Change::Keep,
        (false, _) => Change::Stop,
        (true, _) => Change::Keep,
    }
}

/// Pure: unit indexes to stop, given when each first started. The reverse of the start
/// order rather than of the configuration: a service that waited for another (dockerd for
/// the network) started later and must stop first, so that containers still have their
/// network while Docker stops them.
pub fn stop_order(first_start: &[Option<u64>]) -> Vec<usize> {
    let mut started: Vec<(u64, usize)> =
        first_start.iter().enumerate().filter_map(|(i, s)| s.map(|s| (s, i))).collect();
    started.sort_unstable_by(|a, b| b.cmp(a));
    started.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stops_in_reverse_start_order_not_config_order() {
        // Config order: getty, containerd, dockerd, dhcpcd, sshd; dockerd waited for dhcpcd
        // and started last; the unit that never started is not stopped.
        let first_start = [Some(0), Some(1), Some(4), Some(2), Some(3), None];
        assert_eq!(stop_order(&first_start), vec![2, 4, 3, 1, 0]);
    }

    #[test]
    fn setup_steps_then_main() {
        assert_eq!(step_at(2, 0), Step::Setup(0));
        assert_eq!(step_at(2, 1), Step::Setup(1));
        assert_eq!(step_at(2, 2), Step::Main);
        assert_eq!(step_at(0, 0), Step::Main);
    }

    #[test]
    fn exits_of_setup_and_service() {
        let t0 = Instant::now();
        let (p, other) = (Pid::from_raw(10), Pid::from_raw(11));
        let setup = State::Setup { step: 0, pid: p };
        assert_eq!(on_exit(setup, p, true, t0), Exit::Next(1));
        assert_eq!(on_exit(setup, p, false, t0), Exit::SetupFailed(0));
        assert_eq!(on_exit(setup, other, true, t0), Exit::NotOurs);
        let running = State::Running { pid: p, since: t0 };
        assert_eq!(on_exit(running, p, true, t0 + Duration::from_secs(1)), Exit::Ended { healthy: false });
        assert_eq!(on_exit(running, p, false, t0 + HEALTHY_RUN), Exit::Ended { healthy: true });
        for s in [State::Disabled, State::Done, State::Waiting { since: t0 }, State::Backoff { until: t0 }] {
            assert_eq!(on_exit(s, p, true, t0), Exit::NotOurs);
        }
    }

    #[test]
    fn backoff_ends_in_waiting() {
        let t0 = Instant::now();
        let b = State::Backoff { until: t0 + Duration::from_secs(2) };
        assert_eq!(tick(b, t0), b);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(tick(b, later), State::Waiting { since: later });
        let r = State::Running { pid: Pid::from_raw(1), since: t0 };
        assert_eq!(tick(r, later), r);
    }

    #[test]
    fn a_recheck_starts_configured_and_stops_unconfigured_services() {
        let now = Instant::now();
        let pid = Pid::from_raw(42);
        // The file appeared: a service that was never started starts.
        assert_eq!(change_for(true, &State::Disabled), Change::Start);
        // The file is gone: whatever runs or is about to run stops.
        for state in [
            State::Running { pid, since: now },
            State::Setup { step: 0, pid },
            State::Waiting { since: now },
            State::Backoff { until: now },
        ] {
            assert_eq!(change_for(false, &state), Change::Stop, "{state:?}");
            assert_eq!(change_for(true, &state), Change::Keep, "{state:?}");
        }
        // Nothing twice, and a finished one-shot stays finished.
        assert_eq!(change_for(false, &State::Stopping { pid, kill_at: now }), Change::Keep);
        assert_eq!(change_for(false, &State::Disabled), Change::Keep);
        assert_eq!(change_for(true, &State::Done), Change::Keep);
        // The stopped service's exit is recognised as such.
        assert_eq!(on_exit(State::Stopping { pid, kill_at: now }, pid, false, now), Exit::Stopped);
    }
}
