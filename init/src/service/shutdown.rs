//! The end of supervision: services stopped in the reverse of their start order, each with
//! its own timeout and signal, then every process left.

use super::spawn::stop_signal;
use super::state::{stop_order, State};
use super::supervisor::Supervisor;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

impl Supervisor {
    /// Stops services in the reverse of the order they started in, each with its own
    /// timeout, then every remaining process.
    pub fn stop_all(&mut self) {
        let order = stop_order(&self.units.iter().map(|u| u.first_start).collect::<Vec<_>>());
        for i in order {
            let pid = match self.units[i].state {
                State::Running { pid, .. } | State::Setup { pid, .. } | State::Stopping { pid, .. } => pid,
                _ => continue,
            };
            let name = self.units[i].svc.name.clone();
            let timeout = Duration::from_secs(self.units[i].svc.stop_timeout_secs);
            let sig = stop_signal(&self.units[i].svc);
            let start = Instant::now();
            log::info!("shutdown: stopping {name}");
            let _ = kill(pid, sig);
            // Services say the most while they stop: keep their pipes empty, or a full one
            // would block them until they are killed.
            if !self.wait_gone(pid, timeout) {
                log::warn!("shutdown: {name} did not stop within {} s; killing it", timeout.as_secs());
                let _ = kill(pid, Signal::SIGKILL);
                self.wait_gone(pid, Duration::from_secs(5));
            }
            log::info!("shutdown: {name} stopped ({:.1} s)", start.elapsed().as_secs_f64());
            self.units[i].state = State::Done;
        }
        kill_everything();
        self.drain_outputs();
        // The log files go with their units: /var/log can be unmounted after this.
        for u in &mut self.units {
            u.output = None;
        }
        self.changed = true;
        self.publish();
    }

    /// Waits until `pid` has exited (reaping it and anything else that exits meanwhile),
    /// copying the services' output to their logs meanwhile.
    fn wait_gone(&mut self, pid: Pid, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            self.drain_outputs();
            if let Some(done) = reap_until(pid) {
                return done;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reaps what has exited; Some(true) once `pid` is among it (or nothing is left).
fn reap_until(pid: Pid) -> Option<bool> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(s) if s.pid() == Some(pid) => return Some(true),
            Ok(_) => continue,
            Err(nix::Error::ECHILD) => return Some(true),
            Err(_) => return None,
        }
    }
}

/// SIGTERM to every process but PID 1, a grace period, then SIGKILL.
fn kill_everything() {
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let start = Instant::now();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(nix::Error::ECHILD) => return,
            Ok(WaitStatus::StillAlive) => {
                if start.elapsed() > Duration::from_secs(5) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {}
        }
    }
    log::warn!("shutdown: processes left after SIGTERM; sending SIGKILL");
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while !matches!(waitpid(Pid::from_raw(-1), None), Err(nix::Error::ECHILD)) {}
}
