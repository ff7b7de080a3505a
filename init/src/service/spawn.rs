//! Starting a service's process: a clean environment, its own session, a clean signal mask,
//! and its sandbox (resolved from the /etc it will see) applied right before exec.

use crate::config::Service;
use crate::sandbox::seccomp::Compiled;
use crate::sandbox::{self, Sandbox};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The signal that asks `svc` to stop. Every name a module may write is a signal here
/// (config's test of the shared table), so the fallback is never taken.
pub fn stop_signal(svc: &Service) -> Signal {
    Signal::try_from(svc.stop_signal).unwrap_or(Signal::SIGTERM)
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a service's sandbox could not be resolved; the service is not started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("reading {file}: {source}")]
    ReadAccounts { file: &'static str, source: std::io::Error },
    #[error(transparent)]
    Credentials(#[from] sandbox::CredentialsError),
}

/// Reads one of the account files the service will see.
pub fn read_accounts_file(file: &'static str) -> Result<String, SandboxError> {
    std::fs::read_to_string(file).map_err(|source| SandboxError::ReadAccounts { file, source })
}

/// The service's sandbox, resolved now: its user from the /etc it will see.
pub fn service_sandbox(svc: &Service, seccomp: Option<&Compiled>) -> Result<Sandbox, SandboxError> {
    let sb = &svc.sandbox;
    let user = match &sb.user {
        Some(u) => {
            let passwd = read_accounts_file("/etc/passwd")?;
            let group = read_accounts_file("/etc/group")?;
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
pub fn spawn(
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

/// How a process ended, for the console and `lightwhale status`.
pub fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exit code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("killed by {s}"),
        other => format!("{other:?}"),
    }
}
