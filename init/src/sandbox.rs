//! Runs untrusted-input parsing in a forked child that cannot change anything: no
//! capabilities, no_new_privs, Landlock read-only access to a few trees, and a seccomp
//! allow-list. The child sends its result back over a pipe as RON.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: creating the result pipe: {source}")]
    Pipe { what: String, source: nix::Error },
    #[error("{what}: fork failed: {source}")]
    Fork { what: String, source: nix::Error },
    #[error("{what}: the sandboxed child did not finish within {secs} s and was killed")]
    Timeout { what: String, secs: u64 },
    #[error("{what}: the sandboxed child failed ({status}); output: {output:?}")]
    Child { what: String, status: String, output: String },
    #[error("{what}: could not decode the child's answer: {detail}")]
    Decode { what: String, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RestrictError {
    #[error("dropping capabilities: {0}")]
    Caps(String),
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("applying the Landlock ruleset: {0}")]
    Landlock(String),
    #[error("applying the seccomp filter: {0}")]
    Seccomp(String),
}

/// What the child may still do after `restrict`.
pub struct Policy<'a> {
    /// Trees the child may read (files and directories); nothing may be written anywhere.
    pub read_only: &'a [&'a str],
}

/// Drops every privilege this process has. Irreversible; called in the child only
/// (and by the tests, in a child of their own).
pub fn restrict(policy: &Policy) -> Result<(), RestrictError> {
    use caps::CapSet;
    // The bounding set first: clearing it needs CAP_SETPCAP, which goes next.
    caps::clear(None, CapSet::Bounding).map_err(|e| RestrictError::Caps(e.to_string()))?;
    for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|e| RestrictError::Caps(e.to_string()))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(RestrictError::NoNewPrivs)?;
    landlock_read_only(policy.read_only)?;
    seccomp_allow_list()?;
    Ok(())
}

fn landlock_read_only(paths: &[&str]) -> Result<(), RestrictError> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
    };
    let abi = ABI::V5;
    let err = |e: landlock::RulesetError| RestrictError::Landlock(e.to_string());
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(paths, AccessFs::from_read(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        // Old kernels without Landlock: capabilities and seccomp still hold.
        log::warn!("Landlock is not available in this kernel; the scan runs without it");
    }
    Ok(())
}

/// Syscalls the scan needs: reading files and directories, memory management, and
/// writing its answer. Everything else fails with EPERM, so a mistake here shows up as a
/// clear scan error rather than a silent kill.
fn seccomp_allow_list() -> Result<(), RestrictError> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    use std::collections::BTreeMap;
    let allowed = [
        libc::SYS_read,
        libc::SYS_pread64,
        libc::SYS_readv,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_openat,
        libc::SYS_open,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lstat,
        libc::SYS_stat,
        libc::SYS_lseek,
        libc::SYS_getdents64,
        libc::SYS_readlink,
        libc::SYS_readlinkat,
        libc::SYS_getcwd,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_mprotect,
        libc::SYS_futex,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_clock_gettime,
        libc::SYS_getrandom,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_sched_getaffinity,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    let rules = allowed.iter().map(|&nr| (nr, vec![])).collect::<BTreeMap<_, _>>();
    let filter =
        SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, TargetArch::x86_64)
            .map_err(|e| RestrictError::Seccomp(e.to_string()))?;
    let program: BpfProgram =
        filter.try_into().map_err(|e: seccompiler::BackendError| RestrictError::Seccomp(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| RestrictError::Seccomp(e.to_string()))
}

/// Runs `f` in a restricted child and returns its result.
pub fn run<T, F>(what: &str, policy: &Policy, timeout: Duration, f: F) -> Result<T, SandboxError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, String>,
{
    let (rx, tx) = nix::unistd::pipe().map_err(|source| SandboxError::Pipe { what: what.into(), source })?;
    // SAFETY: PID 1 is single-threaded while stage 1 runs; the child only allocates,
    // reads files and exits.
    match unsafe { fork() }.map_err(|source| SandboxError::Fork { what: what.into(), source })? {
        ForkResult::Child => {
            drop(rx);
            let answer: Result<T, String> = match restrict(policy) {
                Ok(()) => f(),
                Err(e) => Err(e.to_string()),
            };
            let text = ron::to_string(&answer).unwrap_or_else(|e| format!("Err({:?})", e.to_string()));
            let mut out = std::fs::File::from(tx);
            let code = if out.write_all(text.as_bytes()).is_ok() { 0 } else { 1 };
            // SAFETY: _exit skips destructors and atexit handlers that belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(tx);
            let read = read_with_timeout(rx, timeout);
            let status = reap(child, read.is_err());
            let text = match read {
                Ok(t) => t,
                Err(()) => return Err(SandboxError::Timeout { what: what.into(), secs: timeout.as_secs() }),
            };
            if !matches!(status, Some(WaitStatus::Exited(_, 0))) {
                return Err(SandboxError::Child { what: what.into(), status: format!("{status:?}"), output: text });
            }
            let answer: Result<T, String> =
                ron::from_str(&text).map_err(|e| SandboxError::Decode { what: what.into(), detail: e.to_string() })?;
            answer.map_err(|output| SandboxError::Child {
                what: what.into(),
                status: "reported an error".into(),
                output,
            })
        }
    }
}

fn read_with_timeout(rx: OwnedFd, timeout: Duration) -> Result<String, ()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(rx);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => return Err(()),
        }
        let mut chunk = [0u8; 65536];
        match file.read(&mut chunk) {
            Ok(0) => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
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
