//! The supervisor's loop: it waits for signals, the power button and the services' output,
//! drives each service's state machine (`state`) through its conditions (`conditions`),
//! starts (`spawn`) and restarts (`restart`) it, reaps every zombie, publishes the services'
//! facts, and runs the `chores` every half minute. `shutdown` ends it.

use super::conditions::conditions_met;
use super::restart::after_failure;
use super::signals::{handled_signals, request_for, PowerRequest, RECHECK_SIGNAL};
use super::spawn::{describe, describe_sandbox, service_sandbox, spawn, stop_signal};
use super::state::{change_for, on_exit, state_name, step_at, tick, Change, Exit, State, Step};
use crate::config::{Output, Service};
use crate::kernel::input;
use crate::sandbox;
use crate::sandbox::seccomp::{self, Compiled};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) struct Unit {
    pub(super) svc: Service,
    /// The service's compiled seccomp filters (compiled once, at start-up).
    seccomp: Option<Compiled>,
    pub(super) state: State,
    failures: u32,
    started_once: bool,
    /// Position in the order in which services first started.
    pub(super) first_start: Option<u64>,
    /// Starts after the first (`lightwhale status`).
    restarts: u32,
    /// Seconds since boot when the service last started.
    started_at: Option<f64>,
    /// How the service's last process ended.
    last_exit: Option<String>,
    /// Where its stdout and stderr go (opened at its first start).
    pub(super) output: Option<crate::logging::files::ServiceOutput>,
}

pub struct Supervisor {
    pub(super) units: Vec<Unit>,
    /// Something changed that `lightwhale status` shows.
    pub(super) changed: bool,
    chores: crate::service::chores::Chores,
    signals: SignalFd,
    buttons: Vec<File>,
}

impl Supervisor {
    /// Signals must already be blocked (see `handled_signals`). `profiles` are the
    /// configuration's seccomp profiles; `mode` comes from `lightwhale.seccomp`.
    pub fn new(
        services: Vec<Service>,
        profiles: &BTreeMap<String, seccomp::Named>,
        mode: seccomp::Mode,
        chores: crate::service::chores::Chores,
    ) -> nix::Result<Supervisor> {
        let signals = SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        let buttons = input::open_power_buttons(Path::new("/sys/class/input"), Path::new("/dev/input"));
        if buttons.is_empty() {
            log::debug!("no ACPI power button found");
        }
        match sandbox::landlock_abi() {
            0 => log::warn!("this kernel has no Landlock: services run without their Landlock rules"),
            v => log::debug!("Landlock ABI {v}"),
        }
        if mode == seccomp::Mode::Log {
            log::warn!("lightwhale.seccomp=log: syscalls outside a service's allow-list are logged, not denied");
        }
        let now = Instant::now();
        let units = services
            .into_iter()
            .map(|svc| {
                let enabled = svc.only_if_exists.as_deref().is_none_or(|p| Path::new(p).exists());
                if !enabled {
                    log::info!("service {}: not configured, not started", svc.name);
                }
                // The configuration was checked at load time: the profile exists and compiles.
                let seccomp = svc.sandbox.seccomp.as_ref().and_then(|name| {
                    let compiled = profiles.get(name).map(|p| seccomp::compile(p, mode));
                    match compiled {
                        Some(Ok(c)) => Some(c),
                        other => {
                            log::error!("service {}: seccomp profile {name}: {other:?}; not started", svc.name);
                            None
                        }
                    }
                });
                let broken = svc.sandbox.seccomp.is_some() && seccomp.is_none();
                Unit {
                    state: if enabled && !broken { State::Waiting { since: now } } else { State::Disabled },
                    svc,
                    seccomp,
                    failures: 0,
                    started_once: false,
                    first_start: None,
                    restarts: 0,
                    started_at: None,
                    last_exit: None,
                    output: None,
                }
            })
            .collect();
        Ok(Supervisor { units, changed: true, chores, signals, buttons })
    }

    /// Supervises until a power request arrives.
    pub fn run(&mut self) -> PowerRequest {
        loop {
            self.advance();
            self.publish();
            let timeout = self.next_timeout();
            if let Some(req) = self.wait_events(timeout) {
                return req;
            }
        }
    }

    /// Writes the services' state for `lightwhale status`, when it changed.
    pub(super) fn publish(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        let services: Vec<crate::facts::ServiceFact> = self
            .units
            .iter()
            .map(|u| crate::facts::ServiceFact {
                name: u.svc.name.clone(),
                state: state_name(&u.state).into(),
                pid: match u.state {
                    State::Running { pid, .. } => Some(pid.as_raw()),
                    _ => None,
                },
                restarts: u.restarts,
                started_at_s: u.started_at,
                last_exit: u.last_exit.clone(),
            })
            .collect();
        if let Err(e) = crate::facts::write(crate::facts::SERVICES, &services) {
            log::warn!("writing {}: {e}", crate::facts::SERVICES);
        }
    }

    /// Copies what every service has written into its log.
    pub(super) fn drain_outputs(&mut self) {
        for o in self.units.iter_mut().filter_map(|u| u.output.as_mut()) {
            o.drain();
        }
    }

    fn advance(&mut self) {
        let now = Instant::now();
        self.chores.run_when_due(now);
        for i in 0..self.units.len() {
            let unit = &mut self.units[i];
            if let State::Stopping { pid, kill_at } = unit.state {
                if now >= kill_at {
                    log::warn!("service {}: did not stop in time; killing it", unit.svc.name);
                    let _ = kill(pid, Signal::SIGKILL);
                    unit.state = State::Stopping { pid, kill_at: now + Duration::from_secs(3600) };
                }
            }
            unit.state = tick(unit.state, now);
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
        if step == 0 {
            if let Err(e) = crate::service::dirs::make_for_service(&unit.svc.directories) {
                log::error!("service {name}: {e}");
                self.failed(i);
                return;
            }
        }
        let (argv, sandbox) = match step_at(unit.svc.setup.len(), step) {
            // Setup commands come from the image's configuration, not from the daemon:
            // they run before the sandbox (creating the directories its rules name).
            Step::Setup(k) => (unit.svc.setup[k].clone(), None),
            Step::Main => match service_sandbox(&unit.svc, unit.seccomp.as_ref()) {
                Ok(sb) => (unit.svc.exec.clone(), Some(sb)),
                Err(e) => {
                    log::error!("service {name}: {e}");
                    self.failed(i);
                    return;
                }
            },
        };
        if unit.svc.output == Output::LogFile && unit.output.is_none() {
            match crate::logging::files::ServiceOutput::open(&name) {
                Ok(o) => unit.output = Some(o),
                Err(e) => log::warn!("service {name}: no log file ({e}); its output is lost"),
            }
        }
        let stdio = unit.output.as_ref().map(|o| o.stdio()).transpose();
        let spawned = stdio.and_then(|stdio| spawn(&argv, stdio, &unit.svc.env, sandbox));
        self.changed = true;
        match spawned {
            Ok(pid) if step < unit.svc.setup.len() => unit.state = State::Setup { step, pid },
            Ok(pid) => {
                if unit.started_once {
                    unit.restarts += 1;
                    log::info!("service {name}: started again (pid {pid})");
                } else {
                    log::info!("service {name}: started (pid {pid}; {})", describe_sandbox(&unit.svc));
                }
                unit.started_once = true;
                unit.started_at = Some(crate::logging::console::uptime());
                unit.state = State::Running { pid, since: Instant::now() };
            }
            Err(e) => {
                log::error!("service {name}: cannot start {}: {e}", argv.first().map(String::as_str).unwrap_or("?"));
                self.failed(i);
            }
        }
    }

    fn failed(&mut self, i: usize) {
        self.changed = true;
        let unit = &mut self.units[i];
        let (state, failures) = after_failure(unit.svc.restart, unit.failures, Instant::now());
        if let State::Backoff { until } = state {
            log::info!(
                "service {}: restarting in {} s",
                unit.svc.name,
                until.saturating_duration_since(Instant::now()).as_secs_f64().round()
            );
        }
        unit.state = state;
        unit.failures = failures;
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
            .chain([crate::service::chores::EVERY])
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
        let outputs = self.units.iter().filter_map(|u| u.output.as_ref());
        fds.extend(outputs.map(|o| PollFd::new(o.reader(), PollFlags::POLLIN)));
        if poll(&mut fds, ms).is_err() {
            return None;
        }
        let button_ready: Vec<bool> = fds[1..=self.buttons.len()]
            .iter()
            .map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        drop(fds);
        self.drain_outputs();
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
            let success = matches!(status, WaitStatus::Exited(_, 0));
            let now = Instant::now();
            let Some((i, exit)) = self
                .units
                .iter()
                .enumerate()
                .map(|(i, u)| (i, on_exit(u.state, pid, success, now)))
                .find(|(_, e)| *e != Exit::NotOurs)
            else {
                continue;
            };
            let name = self.units[i].svc.name.clone();
            match exit {
                Exit::Next(step) => self.begin(i, step),
                Exit::SetupFailed(step) => {
                    log::error!(
                        "service {name}: setup command {:?} failed: {}",
                        self.units[i].svc.setup[step],
                        describe(&status)
                    );
                    self.failed(i);
                }
                Exit::Ended { healthy } => {
                    self.units[i].last_exit = Some(describe(&status));
                    if let State::Running { since, .. } = self.units[i].state {
                        log::info!(
                            "service {name}: exited after {:.1} s: {}",
                            now.saturating_duration_since(since).as_secs_f64(),
                            describe(&status)
                        );
                    }
                    if healthy {
                        self.units[i].failures = 0;
                    }
                    self.failed(i);
                }
                Exit::Stopped => {
                    log::info!("service {name}: stopped ({})", describe(&status));
                    self.changed = true;
                    self.units[i].state = State::Disabled;
                }
                Exit::NotOurs => {}
            }
        }
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
                            let _ = kill(pid, stop_signal(&unit.svc));
                            State::Stopping { pid, kill_at: now + Duration::from_secs(unit.svc.stop_timeout_secs) }
                        }
                        _ => State::Disabled,
                    };
                }
                Change::Keep => {}
            }
            self.changed = true;
        }
    }
}
