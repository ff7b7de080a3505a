//! Runs the services from the init configuration: waits for their conditions, runs their
//! setup commands, restarts them with backoff when they exit, reaps every zombie, and
//! turns signals and the power button into power requests.

use crate::config::{Condition, Output, Restart, Service};
use crate::{input, net};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Restart delay after `failures` quick exits in a row: 1 s, 2 s, 4 s ... up to 60 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

/// A service that ran at least this long before exiting is restarted without penalty.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum State {
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

struct Unit {
    svc: Service,
    state: State,
    failures: u32,
    started_once: bool,
    /// Position in the order in which services first started.
    first_start: Option<u64>,
}

pub struct Supervisor {
    units: Vec<Unit>,
    signals: SignalFd,
    buttons: Vec<File>,
}

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

impl Supervisor {
    /// Signals must already be blocked (see `handled_signals`).
    pub fn new(services: Vec<Service>) -> nix::Result<Supervisor> {
        let signals = SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        let buttons = input::open_power_buttons(Path::new("/sys/class/input"), Path::new("/dev/input"));
        if buttons.is_empty() {
            log::debug!("no ACPI power button found");
        }
        let now = Instant::now();
        let units = services
            .into_iter()
            .map(|svc| {
                let enabled = svc.only_if_exists.as_deref().is_none_or(|p| Path::new(p).exists());
                if !enabled {
                    log::info!("service {}: not configured, not started", svc.name);
                }
                Unit {
                    state: if enabled { State::Waiting { since: now } } else { State::Disabled },
                    svc,
                    failures: 0,
                    started_once: false,
                    first_start: None,
                }
            })
            .collect();
        Ok(Supervisor { units, signals, buttons })
    }

    /// Supervises until a power request arrives.
    pub fn run(&mut self) -> PowerRequest {
        loop {
            self.advance();
            let timeout = self.next_timeout();
            if let Some(req) = self.wait_events(timeout) {
                return req;
            }
        }
    }

    fn advance(&mut self) {
        let now = Instant::now();
        for i in 0..self.units.len() {
            let unit = &mut self.units[i];
            match unit.state {
                State::Backoff { until } if now >= until => unit.state = State::Waiting { since: now },
                State::Stopping { pid, kill_at } if now >= kill_at => {
                    log::warn!("service {}: did not stop in time; killing it", unit.svc.name);
                    let _ = kill(pid, Signal::SIGKILL);
                    unit.state = State::Stopping { pid, kill_at: now + Duration::from_secs(3600) };
                }
                _ => {}
            }
            if let State::Waiting { since } = unit.state {
                if conditions_met(&unit.svc, since) {
                    self.begin(i, 0);
                }
            }
        }
    }

    /// Runs setup step `step` (or the service itself once setup is done).
    fn begin(&mut self, i: usize, step: usize) {
        let started_before = self.units.iter().filter(|u| u.first_start.is_some()).count() as u64;
        let unit = &mut self.units[i];
        unit.first_start.get_or_insert(started_before);
        let name = unit.svc.name.clone();
        let (argv, is_setup) = match unit.svc.setup.get(step) {
            Some(cmd) => (cmd.clone(), true),
            None => (unit.svc.exec.clone(), false),
        };
        match spawn(&name, &argv, unit.svc.output, &unit.svc.env) {
            Ok(pid) if is_setup => unit.state = State::Setup { step, pid },
            Ok(pid) => {
                log::info!("service {name}: started (pid {pid}){}", if unit.started_once { " again" } else { "" });
                unit.started_once = true;
                unit.state = State::Running { pid, since: Instant::now() };
            }
            Err(e) => {
                log::error!("service {name}: cannot start {}: {e}", argv[0]);
                self.failed(i);
            }
        }
    }

    fn failed(&mut self, i: usize) {
        let unit = &mut self.units[i];
        if unit.svc.restart == Restart::Never {
            unit.state = State::Done;
            return;
        }
        let delay = backoff(unit.failures);
        unit.failures += 1;
        log::info!("service {}: restarting in {} s", unit.svc.name, delay.as_secs());
        unit.state = State::Backoff { until: Instant::now() + delay };
    }

    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Waiting { .. } => Some(Duration::from_millis(200)),
                State::Backoff { until } | State::Stopping { kill_at: until, .. } => {
                    Some(until.saturating_duration_since(now))
                }
                _ => None,
            })
            .min()
    }

    fn wait_events(&mut self, timeout: Option<Duration>) -> Option<PowerRequest> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = match timeout {
            Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        fds.extend(self.buttons.iter().map(|b| PollFd::new(b.as_fd(), PollFlags::POLLIN)));
        if poll(&mut fds, ms).is_err() {
            return None;
        }
        let button_ready: Vec<bool> =
            fds[1..].iter().map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))).collect();
        drop(fds);
        for (i, ready) in button_ready.into_iter().enumerate() {
            if ready {
                let mut buf = [0u8; input::EVENT_SIZE * 16];
                if let Ok(n) = self.buttons[i].read(&mut buf) {
                    if input::is_power_press(&buf[..n]) {
                        log::info!("power button pressed");
                        return Some(PowerRequest::Poweroff);
                    }
                }
            }
        }
        let mut request = None;
        let mut recheck = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
            if sig == Signal::SIGCHLD {
                continue;
            }
            recheck |= sig == RECHECK_SIGNAL;
            if let Some(r) = request_for(sig) {
                log::info!("received {sig}: {r:?}");
                request = Some(r);
            }
        }
        self.reap();
        if recheck {
            self.recheck_configured();
        }
        request
    }

    /// Collects every exited child: services, their setup commands, and orphans that were
    /// re-parented to PID 1.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else { continue };
            let ok = matches!(status, WaitStatus::Exited(_, 0));
            let Some(i) = self.units.iter().position(|u| match u.state {
                State::Setup { pid: p, .. } | State::Running { pid: p, .. } | State::Stopping { pid: p, .. } => {
                    p == pid
                }
                _ => false,
            }) else {
                continue;
            };
            match self.units[i].state {
                State::Stopping { .. } => {
                    log::info!("service {}: stopped ({})", self.units[i].svc.name, describe(&status));
                    self.units[i].state = State::Disabled;
                }
                State::Setup { step, .. } => {
                    if ok {
                        self.begin(i, step + 1);
                    } else {
                        log::error!(
                            "service {}: setup command {:?} failed: {status:?}",
                            self.units[i].svc.name,
                            self.units[i].svc.setup[step]
                        );
                        self.failed(i);
                    }
                }
                State::Running { since, .. } => {
                    let ran = since.elapsed();
                    log::info!(
                        "service {}: exited after {:.1} s: {}",
                        self.units[i].svc.name,
                        ran.as_secs_f64(),
                        describe(&status)
                    );
                    if ran >= HEALTHY_RUN {
                        self.units[i].failures = 0;
                    }
                    self.failed(i);
                }
                _ => {}
            }
        }
    }

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
            let sig = self.units[i].svc.stop_signal.parse().unwrap_or(Signal::SIGTERM);
            let start = Instant::now();
            log::info!("shutdown: stopping {name}");
            let _ = kill(pid, sig);
            if !wait_gone(pid, timeout) {
                log::warn!("shutdown: {name} did not stop within {} s; killing it", timeout.as_secs());
                let _ = kill(pid, Signal::SIGKILL);
                wait_gone(pid, Duration::from_secs(5));
            }
            log::info!("shutdown: {name} stopped ({:.1} s)", start.elapsed().as_secs_f64());
            self.units[i].state = State::Done;
        }
        kill_everything();
    }
}

/// What a re-check (RECHECK_SIGNAL) does to a service with `only_if_exists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Start,
    Stop,
    Keep,
}

/// Pure: start a service whose file appeared, stop one whose file went away; a service
/// that is already on its way (or finished for good) is left alone.
fn change_for(configured: bool, state: &State) -> Change {
    match (configured, state) {
        (true, State::Disabled) => Change::Start,
        (false, State::Disabled | State::Stopping { .. } | State::Done) => Change::Keep,
        (false, _) => Change::Stop,
        (true, _) => Change::Keep,
    }
}

impl Supervisor {
    /// Starts the services whose `only_if_exists` file now exists and stops those whose
    /// file is gone: a command that configures a service takes effect at once.
    fn recheck_configured(&mut self) {
        let now = Instant::now();
        for unit in self.units.iter_mut() {
            let Some(path) = unit.svc.only_if_exists.as_deref() else { continue };
            let configured = Path::new(path).exists();
            match change_for(configured, &unit.state) {
                Change::Start => {
                    log::info!("service {}: configured ({path} exists), starting", unit.svc.name);
                    unit.failures = 0;
                    unit.state = State::Waiting { since: now };
                }
                Change::Stop => {
                    log::info!("service {}: no longer configured ({path} is gone), stopping", unit.svc.name);
                    unit.state = match unit.state {
                        State::Running { pid, .. } | State::Setup { pid, .. } => {
                            let _ = kill(pid, unit.svc.stop_signal.parse().unwrap_or(Signal::SIGTERM));
                            State::Stopping { pid, kill_at: now + Duration::from_secs(unit.svc.stop_timeout_secs) }
                        }
                        _ => State::Disabled,
                    };
                }
                Change::Keep => {}
            }
        }
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

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exit code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("killed by {s}"),
        other => format!("{other:?}"),
    }
}

fn conditions_met(svc: &Service, since: Instant) -> bool {
    let waited = since.elapsed();
    svc.wait_for.iter().all(|c| {
        let met = match c {
            Condition::NetworkOnline { .. } => net::network_online(),
            Condition::PathExists { path, .. } => Path::new(path).exists(),
        };
        if !met && waited >= Duration::from_secs(c.timeout_secs()) {
            log::warn!("service {}: {c:?} not met after {} s; starting anyway", svc.name, c.timeout_secs());
            return true;
        }
        met
    })
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn spawn(name: &str, argv: &[String], output: Output, env: &[(String, String)]) -> std::io::Result<Pid> {
    let (out, err) = match output {
        Output::Null => (Stdio::null(), Stdio::null()),
        Output::LogFile => {
            let _ = std::fs::create_dir_all("/var/log");
            let f = std::fs::OpenOptions::new().create(true).append(true).open(format!("/var/log/{name}.log"))?;
            (Stdio::from(f.try_clone()?), Stdio::from(f))
        }
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "linux")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe; each service gets its own session so a
    // getty can take a controlling terminal and signals to one do not hit the others.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Waits until `pid` has exited (reaping it and anything else that exits meanwhile).
fn wait_gone(pid: Pid, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s) if s.pid() == Some(pid) => return true,
            Ok(_) => continue,
            Err(nix::Error::ECHILD) => return true,
            Err(_) => {}
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
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
    fn stops_in_reverse_start_order_not_config_order() {
        // Config order: getty, containerd, dockerd, dhcpcd, sshd; dockerd waited for dhcpcd
        // and started last; the unit that never started is not stopped.
        let first_start = [Some(0), Some(1), Some(4), Some(2), Some(3), None];
        assert_eq!(stop_order(&first_start), vec![2, 4, 3, 1, 0]);
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
        assert_eq!(RECHECK_SIGNAL, Signal::SIGHUP);
        assert_eq!(request_for(RECHECK_SIGNAL), None, "the re-check signal must not power anything off");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(6), Duration::from_secs(60));
        assert_eq!(backoff(100), Duration::from_secs(60));
    }
}
