//! Runs the services from the init configuration: waits for their conditions, runs their
//! setup commands, restarts them with backoff when they exit, reaps every zombie, and
//! turns signals and the power button into power requests.

use crate::config::{Condition, Output, Restart, Service};
use crate::sandbox::{self, Sandbox};
use crate::seccomp::{self, Compiled};
use crate::{input, net};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
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
pub use lightwhale_types::service::backoff;

/// The signal that asks `svc` to stop. Every name a module may write is a signal here
/// (config's test of the shared table), so the fallback is never taken.
fn stop_signal(svc: &Service) -> Signal {
    Signal::try_from(svc.stop_signal).unwrap_or(Signal::SIGTERM)
}

/// How often the default-password notices are checked against /etc/shadow.
const NOTICE_EVERY: Duration = Duration::from_secs(30);

/// A service that ran at least this long before exiting is restarted without penalty.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

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

/// Pure: the state and failure count after a failed start or an exit.
pub fn after_failure(restart: Restart, failures: u32, now: Instant) -> (State, u32) {
    match restart {
        Restart::Never => (State::Done, failures),
        Restart::Always => (State::Backoff { until: now + backoff(failures) }, failures + 1),
    }
}

struct Unit {
    svc: Service,
    /// The service's compiled seccomp filters (compiled once, at start-up).
    seccomp: Option<Compiled>,
    state: State,
    failures: u32,
    started_once: bool,
    /// Position in the order in which services first started.
    first_start: Option<u64>,
    /// Starts after the first (`lightwhale status`).
    restarts: u32,
    /// Seconds since boot when the service last started.
    started_at: Option<f64>,
    /// How the service's last process ended.
    last_exit: Option<String>,
    /// Where its stdout and stderr go (opened at its first start).
    output: Option<crate::logs::ServiceOutput>,
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

pub struct Supervisor {
    units: Vec<Unit>,
    /// Something changed that `lightwhale status` shows.
    changed: bool,
    notices: crate::password::Notices,
    notices_checked: Option<Instant>,
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
    /// Signals must already be blocked (see `handled_signals`). `profiles` are the
    /// configuration's seccomp profiles; `mode` comes from `lightwhale.seccomp`.
    pub fn new(
        services: Vec<Service>,
        profiles: &BTreeMap<String, seccomp::Named>,
        mode: seccomp::Mode,
        notices: crate::password::Notices,
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
        Ok(Supervisor { units, changed: true, notices, notices_checked: None, signals, buttons })
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
    fn publish(&mut self) {
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
    fn drain_outputs(&mut self) {
        for o in self.units.iter_mut().filter_map(|u| u.output.as_mut()) {
            o.drain();
        }
    }

    fn advance(&mut self) {
        let now = Instant::now();
        if self.notices_checked.is_none_or(|t| now.saturating_duration_since(t) >= NOTICE_EVERY) {
            self.notices.refresh();
            self.notices_checked = Some(now);
        }
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
            if let Err(e) = crate::service_dirs::make_for_service(&unit.svc.directories) {
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
            match crate::logs::ServiceOutput::open(&name) {
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
                unit.started_at = Some(crate::logger::uptime());
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
            .chain([NOTICE_EVERY])
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

/// One line for the console: what the service runs with.
pub fn describe_sandbox(svc: &Service) -> String {
    let sb = &svc.sandbox;
    let mut parts = vec![match sb.bounding {
        None => "all capabilities".to_string(),
        Some(_) => format!("capabilities {:#x}", sb.expected_cap_bnd(sandbox::last_cap())),
    }];
    if let Some(u) = &sb.user {
        parts.push(format!("user {u}"));
    }
    if sb.no_new_privs {
        parts.push("no_new_privs".into());
    }
    if sb.landlock.is_some() {
        parts.push("Landlock".into());
    }
    parts.push(match &sb.seccomp {
        Some(p) => format!("seccomp {p}"),
        None => "no seccomp".into(),
    });
    parts.join(", ")
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
            Condition::HttpOk { socket, path, .. } => {
                crate::http_probe::answers_ok(Path::new(socket), path, crate::http_probe::PATIENCE)
            }
        };
        if !met && waited >= Duration::from_secs(c.timeout_secs()) {
            log::warn!("service {}: {c:?} not met after {} s; starting anyway", svc.name, c.timeout_secs());
            return true;
        }
        met
    })
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The service's sandbox, resolved now: its user from the /etc it will see.
pub fn service_sandbox(svc: &Service, seccomp: Option<&Compiled>) -> Result<Sandbox, String> {
    let sb = &svc.sandbox;
    let user = match &sb.user {
        Some(u) => {
            let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
            let group = std::fs::read_to_string("/etc/group").map_err(|e| format!("reading /etc/group: {e}"))?;
            Some(sandbox::credentials(&passwd, &group, u, sb.group.as_deref())?)
        }
        None => None,
    };
    Ok(Sandbox {
        bounding: sb.bounding,
        drop_process_caps: false,
        user,
        ambient: sb.ambient,
        no_new_privs: sb.no_new_privs,
        landlock: sb.landlock.as_ref().map(|l| sandbox::Landlock {
            read_only: l.read_only.iter().map(Into::into).collect(),
            read_write: l.read_write.iter().map(Into::into).collect(),
            deny_tcp: false,
        }),
        seccomp: seccomp.cloned(),
    })
}

/// Starts `argv` with `stdio` as its stdout and stderr (None: /dev/null).
fn spawn(
    argv: &[String],
    stdio: Option<(Stdio, Stdio)>,
    env: &[(String, String)],
    sandbox: Option<Sandbox>,
) -> std::io::Result<Pid> {
    let (program, args) = argv.split_first().ok_or_else(|| std::io::Error::other("empty command"))?;
    let (out, err) = stdio.unwrap_or_else(|| (Stdio::null(), Stdio::null()));
    let mut cmd = Command::new(program);
    cmd.args(args)
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
    // SAFETY: PID 1 is single-threaded when it spawns, so the child may allocate; setsid,
    // sigprocmask and the sandbox's prctl/capset/Landlock/seccomp calls are plain syscalls.
    // PID 1 blocks the signals it reads from its signalfd, and a blocked mask survives
    // exec: a service that does not clear it itself (chronyd, wpa_supplicant, a console
    // login's shell) would never see SIGTERM or SIGINT. Each service gets its own session
    // so a getty can take a controlling terminal and signals to one do not hit the
    // others; the sandbox goes on last, right before exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)?;
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if let Some(sb) = &sandbox {
                sandbox::apply(sb).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

impl Supervisor {
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
    fn failures_back_off_or_stop() {
        let t0 = Instant::now();
        assert_eq!(after_failure(Restart::Never, 3, t0), (State::Done, 3));
        assert_eq!(after_failure(Restart::Always, 0, t0), (State::Backoff { until: t0 + Duration::from_secs(1) }, 1));
        assert_eq!(after_failure(Restart::Always, 3, t0), (State::Backoff { until: t0 + Duration::from_secs(8) }, 4));
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
        assert_eq!(RECHECK_SIGNAL as i32, lightwhale_types::constants::RECHECK_SIGNAL);
        assert_eq!(request_for(RECHECK_SIGNAL), None, "the re-check signal must not power anything off");
        // The stopped service's exit is recognised as such.
        assert_eq!(on_exit(State::Stopping { pid, kill_at: now }, pid, false, now), Exit::Stopped);
    }
}
