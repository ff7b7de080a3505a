//! Sandboxes: the restrictions a process puts on itself before it runs untrusted code.
//!
//! Two users:
//! - every service, in the supervisor's `pre_exec` (its `sandbox` in `init.ron`);
//! - the device probe: a forked child of PID 1 that parses bytes from untrusted disks and
//!   reports back over a pipe (`run`). It keeps nothing: no capabilities, no_new_privs,
//!   Landlock read-only /dev and /sys, no network, no signals out, and an allow-list.
//!
//! `apply` always goes in the same order, and each step needs the one before:
//! 1. the capability bounding set (dropping needs CAP_SETPCAP, which may go with it);
//! 2. the user and groups (setuid needs CAP_SETUID, still there);
//! 3. the ambient set (for a service that runs as a user but keeps a capability);
//! 4. no_new_privs (setuid programs and file capabilities stop granting anything);
//! 5. Landlock (opens the allowed paths, which seccomp might forbid);
//! 6. seccomp, last, so none of the steps above needs a syscall the profile denies.

pub mod seccomp;

use crate::sandbox::seccomp::Compiled;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The most a sandboxed child may send back. A device report is a few hundred bytes; a
/// child that sends more is broken or hostile and PID 1 must not hold its output in RAM.
pub const MAX_ANSWER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: creating the result pipe: {source}")]
    Pipe { what: String, source: nix::Error },
    #[error("{what}: fork failed: {source}")]
    Fork { what: String, source: nix::Error },
    #[error("{what}: the sandboxed child did not finish within {secs} s and was killed")]
    Timeout { what: String, secs: u64 },
    #[error("{what}: the sandboxed child sent more than {limit} bytes and was killed")]
    TooLarge { what: String, limit: usize },
    #[error("{what}: the sandboxed child failed ({status}); output: {output:?}")]
    Child { what: String, status: String, output: String },
    #[error("{what}: could not decode the child's answer: {detail}")]
    Decode { what: String, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RestrictError {
    #[error("dropping capabilities: {0}")]
    Caps(String),
    #[error("switching to uid {uid} gid {gid}: {source}")]
    User { uid: u32, gid: u32, source: nix::Error },
    #[error("raising ambient capabilities: {0}")]
    Ambient(String),
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("applying the Landlock ruleset: {0}")]
    Landlock(String),
    #[error("applying the seccomp filter: {0}")]
    Seccomp(String),
    #[error("closing inherited descriptors: {0}")]
    CloseFds(nix::Error),
}

/// A resolved user to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A service's user or group that the image's account files do not give: a module's
/// `init.ron` names an account its packages did not create.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("user {0:?} is not in /etc/passwd")]
    NoUser(String),
    #[error("user {0:?} has a bad uid")]
    BadUserId(String),
    #[error("user {0:?} has a bad gid")]
    BadUserGroupId(String),
    #[error("group {0:?} is not in /etc/group")]
    NoGroup(String),
    #[error("group {0:?} has a bad gid")]
    BadGroupId(String),
}

/// Pure: the uid, gid and supplementary groups of `user` from the text of /etc/passwd
/// and /etc/group; `group` replaces the primary group when given.
pub fn credentials(
    passwd: &str,
    group_file: &str,
    user: &str,
    group: Option<&str>,
) -> Result<Credentials, CredentialsError> {
    let fields = |l: &str| l.split(':').map(str::to_string).collect::<Vec<_>>();
    let pw = passwd
        .lines()
        .map(fields)
        .find(|f| f.len() >= 4 && f[0] == user)
        .ok_or_else(|| CredentialsError::NoUser(user.into()))?;
    let uid = pw[2].parse().map_err(|_| CredentialsError::BadUserId(user.into()))?;
    let mut gid: u32 = pw[3].parse().map_err(|_| CredentialsError::BadUserGroupId(user.into()))?;
    let groups: Vec<Vec<String>> = group_file.lines().map(fields).filter(|f| f.len() >= 4).collect();
    if let Some(g) = group {
        let f = groups.iter().find(|f| f[0] == g).ok_or_else(|| CredentialsError::NoGroup(g.into()))?;
        gid = f[2].parse().map_err(|_| CredentialsError::BadGroupId(g.into()))?;
    }
    let mut extra: Vec<u32> =
        groups.iter().filter(|f| f[3].split(',').any(|m| m == user)).filter_map(|f| f[2].parse().ok()).collect();
    extra.insert(0, gid);
    extra.dedup();
    Ok(Credentials { uid, gid, groups: extra })
}

/// The Landlock ABI version of the running kernel, 0 without Landlock.
pub fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0)
}

/// Landlock rules: everything not below one of these paths is out of reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Landlock {
    /// Read, list and execute.
    pub read_only: Vec<PathBuf>,
    /// Everything, including creating and removing files.
    pub read_write: Vec<PathBuf>,
    /// No TCP bind or connect (kernels with Landlock ABI 4+).
    pub deny_tcp: bool,
}

/// Everything `apply` does, already resolved and compiled (nothing here can fail to parse
/// after the fork).
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Capabilities kept in the bounding set, as a bitmask (bit n = capability n);
    /// `None` keeps the bounding set as it is.
    pub bounding: Option<u64>,
    /// Also empty the effective, permitted and inheritable sets now: for a child that
    /// does not exec (the probe), where the bounding set alone changes nothing.
    pub drop_process_caps: bool,
    pub user: Option<Credentials>,
    /// Raised into the ambient set (after the user switch), so a non-root program keeps
    /// them across exec.
    pub ambient: u64,
    pub no_new_privs: bool,
    pub landlock: Option<Landlock>,
    pub seccomp: Option<Compiled>,
}

/// What `apply` could enforce; only Landlock depends on the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockOutcome {
    NotRequested,
    Full,
    /// The kernel has an older Landlock: file rules hold, network or scope rules do not.
    Partial,
    /// No Landlock in this kernel: capabilities and seccomp still hold.
    Unavailable,
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Applies `sb` to the calling process, in the order the module comment gives.
/// Irreversible. Makes no allocation that could fail badly after a fork of a
/// single-threaded parent (PID 1 is single-threaded whenever it forks).
pub fn apply(sb: &Sandbox) -> Result<LandlockOutcome, RestrictError> {
    use caps::CapSet;
    let caps_err = |e: caps::errors::CapsError| RestrictError::Caps(e.to_string());
    if let Some(keep) = sb.bounding {
        for n in 0..=last_cap() {
            if keep & (1u64 << n) == 0 {
                // SAFETY: prctl with integer arguments only.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) } != 0 {
                    return Err(RestrictError::Caps(format!("capability {n}: {}", std::io::Error::last_os_error())));
                }
            }
        }
    }
    if sb.drop_process_caps {
        for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
            caps::clear(None, set).map_err(caps_err)?;
        }
    }
    if let Some(c) = &sb.user {
        switch_user(c, sb.ambient != 0)?;
    }
    if sb.ambient != 0 {
        raise_ambient(sb.ambient)?;
    }
    if sb.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(RestrictError::NoNewPrivs)?;
    }
    let outcome = match &sb.landlock {
        Some(l) => landlock(l, sb.no_new_privs)?,
        None => LandlockOutcome::NotRequested,
    };
    if let Some(c) = &sb.seccomp {
        for program in &c.programs {
            install_filter(program)?;
        }
    }
    Ok(outcome)
}

/// Installs one seccomp filter with the seccomp syscall. Not seccompiler's `apply_filter`:
/// that one always sets no_new_privs first, which would make sudo useless under the
/// administrator's profile. Without no_new_privs the kernel requires CAP_SYS_ADMIN, which
/// a root service still has here.
fn install_filter(program: &seccompiler::BpfProgram) -> Result<(), RestrictError> {
    if program.is_empty() {
        return Err(RestrictError::Seccomp("empty filter".into()));
    }
    let len = u16::try_from(program.len()).map_err(|_| RestrictError::Seccomp("filter too long".into()))?;
    // seccompiler's sock_filter has the kernel's layout (repr(C): u16, u8, u8, u32).
    let prog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: prog points at `program`, which outlives the call; the kernel copies it.
    let rc =
        unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) };
    if rc != 0 {
        return Err(RestrictError::Seccomp(format!(
            "{} (a filter without no_new_privs needs CAP_SYS_ADMIN)",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn switch_user(c: &Credentials, keep_caps: bool) -> Result<(), RestrictError> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let err = |source| RestrictError::User { uid: c.uid, gid: c.gid, source };
    let groups: Vec<Gid> = c.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(err)?;
    let gid = Gid::from_raw(c.gid);
    setresgid(gid, gid, gid).map_err(err)?;
    if keep_caps {
        // Keep the permitted set through setuid, so the ambient set can be raised after.
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(err(nix::Error::last()));
        }
    }
    let uid = Uid::from_raw(c.uid);
    setresuid(uid, uid, uid).map_err(err)
}

fn raise_ambient(mask: u64) -> Result<(), RestrictError> {
    use caps::{CapSet, Capability};
    let wanted: Vec<Capability> = caps::all().into_iter().filter(|c| mask & c.bitmask() != 0).collect();
    let err = |e: caps::errors::CapsError| RestrictError::Ambient(e.to_string());
    // A capability can be ambient only while it is permitted and inheritable.
    let mut inheritable = caps::read(None, CapSet::Inheritable).map_err(err)?;
    inheritable.extend(wanted.iter().copied());
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(err)?;
    for c in wanted {
        caps::raise(None, CapSet::Ambient, c).map_err(err)?;
    }
    Ok(())
}

/// `no_new_privs` is passed on: the landlock crate would otherwise set it on its own,
/// which must stay the sandbox's decision (the step before already set it if asked).
fn landlock(l: &Landlock, no_new_privs: bool) -> Result<LandlockOutcome, RestrictError> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        Scope, ABI,
    };
    let err = |e: landlock::RulesetError| RestrictError::Landlock(e.to_string());
    // Best effort (the crate's default): a kernel with an older ABI enforces what it knows.
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(ABI::V5)).map_err(err)?;
    if l.deny_tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4)).map_err(err)?;
    }
    // No connecting to abstract UNIX sockets and no signals to processes outside the
    // sandbox (kernels with ABI 6+).
    ruleset = ruleset.scope(Scope::from_all(ABI::V6)).map_err(err)?;
    let status = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(&l.read_only, AccessFs::from_read(ABI::V5)))
        .map_err(err)?
        .add_rules(path_beneath_rules(&l.read_write, AccessFs::from_all(ABI::V5)))
        .map_err(err)?
        .no_new_privs(no_new_privs)
        .restrict_self()
        .map_err(err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockOutcome::Full,
        RulesetStatus::PartiallyEnforced => LandlockOutcome::Partial,
        RulesetStatus::NotEnforced => LandlockOutcome::Unavailable,
    })
}

/// The probe's sandbox: nothing but reading `read_only`, and the compiled probe profile.
pub fn probe_sandbox(read_only: &[&str]) -> Result<Sandbox, crate::sandbox::seccomp::SeccompError> {
    let profile = crate::sandbox::seccomp::probe_profile()?;
    Ok(Sandbox {
        bounding: Some(0),
        drop_process_caps: true,
        user: None,
        ambient: 0,
        no_new_privs: true,
        landlock: Some(Landlock {
            read_only: read_only.iter().map(PathBuf::from).collect(),
            read_write: Vec::new(),
            deny_tcp: true,
        }),
        seccomp: Some(crate::sandbox::seccomp::compile(&profile, crate::sandbox::seccomp::Mode::Enforce)?),
    })
}

/// In the child: the answer pipe becomes descriptor 3, stdin/stdout/stderr go to /dev/null
/// and every other descriptor inherited from PID 1 (console, /dev/kmsg, signalfd) is
/// closed, so the child can reach nothing it was not given.
fn close_inherited(tx: OwnedFd) -> Result<std::fs::File, RestrictError> {
    let err = RestrictError::CloseFds;
    // The logger holds /dev/kmsg; it is closed below, and a descriptor number reused by
    // a device the child opens must never be written to.
    log::set_max_level(log::LevelFilter::Off);
    let dup2 = |from: i32, to: i32| {
        // SAFETY: dup2 on descriptors this process owns.
        if from != to && unsafe { libc::dup2(from, to) } < 0 {
            return Err(err(nix::Error::last()));
        }
        Ok(())
    };
    // The pipe first: it might itself be 0, 1 or 2 if PID 1 had those closed.
    let tx_raw = tx.as_raw_fd();
    std::mem::forget(tx);
    dup2(tx_raw, 3)?;
    let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty()).map_err(err)?;
    for fd in 0..3 {
        dup2(null.as_raw_fd(), fd)?;
    }
    // SAFETY: close_range with integer arguments; descriptors >= 4 (the logger's kmsg,
    // the console, the signalfd, `null` and the pipe's old number) are never used again
    // in this child: their owners are forgotten or disabled above.
    std::mem::forget(null);
    if unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) } != 0 {
        return Err(err(nix::Error::last()));
    }
    // SAFETY: descriptor 3 is the pipe's write end, now owned by this File only.
    Ok(unsafe { std::fs::File::from_raw_fd(3) })
}

/// Runs `f` in a child restricted by `sandbox` and returns its result. The child's
/// answer is bounded (MAX_ANSWER) and its descriptors are its own.
pub fn run<T, F>(what: &str, sandbox: &Sandbox, timeout: Duration, f: F) -> Result<T, SandboxError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, String>,
{
    run_bounded(what, sandbox, timeout, MAX_ANSWER, f)
}

/// `run` with an answer of at most `limit` bytes: for a child whose answer carries what it
/// read (a seed's files), bounded by the limits on what it reads.
pub fn run_bounded<T, F>(
    what: &str,
    sandbox: &Sandbox,
    timeout: Duration,
    limit: usize,
    f: F,
) -> Result<T, SandboxError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, String>,
{
    let (rx, tx) = nix::unistd::pipe().map_err(|source| SandboxError::Pipe { what: what.into(), source })?;
    // SAFETY: PID 1 is single-threaded while it forks; the child only allocates, reads
    // files and exits.
    match unsafe { fork() }.map_err(|source| SandboxError::Fork { what: what.into(), source })? {
        ForkResult::Child => {
            drop(rx);
            // A panic in the parser must end this child, not leave it hanging in PID 1's
            // panic handler.
            std::panic::set_hook(Box::new(|_| {
                // SAFETY: _exit ends the process without touching the parent's state.
                unsafe { libc::_exit(101) }
            }));
            let (mut out, answer): (Option<std::fs::File>, Result<T, String>) = match close_inherited(tx) {
                Ok(out) => (Some(out), apply(sandbox).map_err(|e| e.to_string()).and_then(|_| f())),
                Err(e) => (None, Err(e.to_string())),
            };
            let text = ron::to_string(&answer).unwrap_or_else(|e| format!("Err({:?})", e.to_string()));
            let written = out.as_mut().is_some_and(|o| o.write_all(text.as_bytes()).is_ok());
            let code = if written { 0 } else { 1 };
            // SAFETY: _exit skips destructors and atexit handlers that belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(tx);
            let read = read_bounded(rx, timeout, limit);
            let status = reap(child, read.is_err());
            let text = match read {
                Ok(t) => t,
                Err(ReadError::Timeout) => {
                    return Err(SandboxError::Timeout { what: what.into(), secs: timeout.as_secs() })
                }
                Err(ReadError::TooLarge) => return Err(SandboxError::TooLarge { what: what.into(), limit }),
            };
            if !matches!(status, Some(WaitStatus::Exited(_, 0))) {
                return Err(SandboxError::Child { what: what.into(), status: format!("{status:?}"), output: text });
            }
            decode(what, &text)
        }
    }
}

/// Pure: the child's answer as the parent decodes it. Never panics on any input.
pub fn decode<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, SandboxError> {
    let answer: Result<T, String> =
        ron::from_str(text).map_err(|e| SandboxError::Decode { what: what.into(), detail: e.to_string() })?;
    answer.map_err(|output| SandboxError::Child { what: what.into(), status: "reported an error".into(), output })
}

#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    Timeout,
    TooLarge,
}

fn read_bounded(rx: OwnedFd, timeout: Duration, limit: usize) -> Result<String, ReadError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(rx);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => return Err(ReadError::Timeout),
        }
        let mut chunk = [0u8; 16384];
        match file.read(&mut chunk) {
            Ok(0) => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            Ok(n) if buf.len() + n > limit => return Err(ReadError::TooLarge),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Timeout),
        }
    }
}

fn reap(child: Pid, kill: bool) -> Option<WaitStatus> {
    if kill {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    }
    loop {
        match waitpid(child, None) {
            Err(nix::Error::EINTR) => continue,
            r => return r.ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No restriction at all: what the parent does with the answer does not need root.
    fn nothing() -> Sandbox {
        Sandbox::default()
    }

    #[test]
    fn credentials_from_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nntp:x:105:110::/nonexistent:/usr/sbin/nologin\n";
        let group = "root:x:0:\nntp:x:110:\nlog:x:4:ntp,op\nsock:x:120:\n";
        let c = credentials(passwd, group, "ntp", None).unwrap();
        assert_eq!(c, Credentials { uid: 105, gid: 110, groups: vec![110, 4] });
        assert_eq!(credentials(passwd, group, "ntp", Some("sock")).unwrap().gid, 120);
        assert!(credentials(passwd, group, "nobody", None).is_err());
        assert!(credentials(passwd, group, "ntp", Some("nogroup")).is_err());
        assert!(credentials("x:y", "", "x", None).is_err());
    }

    #[test]
    fn answer_round_trips() {
        let got: Vec<String> = run("t", &nothing(), Duration::from_secs(20), || Ok(vec!["sda".to_string()])).unwrap();
        assert_eq!(got, vec!["sda".to_string()]);
    }

    #[test]
    fn answer_over_the_limit_is_rejected() {
        let r: Result<String, _> = run("t", &nothing(), Duration::from_secs(20), || Ok("x".repeat(MAX_ANSWER + 1)));
        assert!(matches!(r, Err(SandboxError::TooLarge { .. })), "{r:?}");
    }

    #[test]
    fn child_error_and_panic_are_errors() {
        let r: Result<String, _> = run("t", &nothing(), Duration::from_secs(20), || Err("broken disk".into()));
        assert!(matches!(&r, Err(SandboxError::Child { output, .. }) if output == "broken disk"), "{r:?}");
        let r: Result<String, _> = run("t", &nothing(), Duration::from_secs(20), || panic!("parser bug"));
        assert!(matches!(&r, Err(SandboxError::Child { status, .. }) if status.contains("101")), "{r:?}");
    }

    #[test]
    fn garbage_answers_are_decode_errors() {
        assert!(matches!(decode::<Vec<String>>("t", "Ok([\"sda\""), Err(SandboxError::Decode { .. })));
        assert!(matches!(decode::<Vec<String>>("t", "\u{0}\u{ff}"), Err(SandboxError::Decode { .. })));
    }
}
