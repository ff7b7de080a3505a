//! The signals PID 1 reads from its signalfd: BusyBox init's power convention (which
//! `reboot`, `poweroff` and `halt` rely on) and the re-check that starts or stops the services
//! whose configuration file appeared or went away.

use nix::sys::signal::{SigSet, Signal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    Reboot,
    Poweroff,
    Halt,
}

/// BusyBox init's signal convention, which `reboot`/`poweroff`/`halt` rely on.
pub fn request_for(sig: Signal) -> Option<PowerRequest> {
    match sig {
        Signal::SIGTERM | Signal::SIGINT => Some(PowerRequest::Reboot),
        Signal::SIGUSR2 | Signal::SIGPWR => Some(PowerRequest::Poweroff),
        Signal::SIGUSR1 => Some(PowerRequest::Halt),
        _ => None,
    }
}

/// Sent to PID 1 after a service's `only_if_exists` file was created or removed (by
/// `setup-wifi`, for instance): the supervisor starts or stops such services at once.
pub const RECHECK_SIGNAL: Signal = Signal::SIGHUP;

pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_signal_convention() {
        assert_eq!(request_for(Signal::SIGTERM), Some(PowerRequest::Reboot));
        assert_eq!(request_for(Signal::SIGUSR2), Some(PowerRequest::Poweroff));
        assert_eq!(request_for(Signal::SIGUSR1), Some(PowerRequest::Halt));
        assert_eq!(request_for(Signal::SIGINT), Some(PowerRequest::Reboot));
        assert_eq!(request_for(Signal::SIGHUP), None);
    }

    #[test]
    fn the_recheck_signal_is_the_one_the_tools_send_and_powers_nothing_off() {
        assert_eq!(RECHECK_SIGNAL as i32, lightwhale_types::constants::RECHECK_SIGNAL);
        assert_eq!(request_for(RECHECK_SIGNAL), None);
        assert!(handled_signals().contains(RECHECK_SIGNAL));
    }
}
