//! Runs a program in a service's sandbox, for trying a profile against the real daemon on a
//! development machine (as root):
//!
//!     cargo run -p lightwhale-init --example sandbox-run -- SERVICE ROOT PROGRAM [ARGS...]
//!
//! SERVICE is a service from modules/*/init.ron; ROOT is a root tree (e.g. the image's,
//! out/build/rootfs, best through an overlay so nothing is written to it). The program runs
//! chrooted into ROOT (so the Landlock paths name ROOT's files) with the service's
//! capabilities, no_new_privs, Landlock and seccomp profile, exactly as the supervisor
//! applies them. `LIGHTWHALE_SECCOMP=log` logs allow-list misses instead.

use lightwhale_init::sandbox::{self, seccomp};
use lightwhale_init::{config, service::spawn};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: sandbox-run SERVICE ROOT PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules");
    let cfg = config::load(&modules).unwrap_or_else(|e| panic!("{e}"));
    let svc = cfg.services.iter().find(|s| s.name == args[0]).unwrap_or_else(|| panic!("no service {}", args[0]));
    let mode = if std::env::var("LIGHTWHALE_SECCOMP").as_deref() == Ok("log") {
        seccomp::Mode::Log
    } else {
        seccomp::Mode::Enforce
    };
    let compiled = svc.sandbox.seccomp.as_ref().map(|n| seccomp::compile(&cfg.seccomp[n], mode).unwrap());
    let sb = spawn::service_sandbox(svc, compiled.as_ref()).unwrap();
    let root = PathBuf::from(&args[1]);
    let mut cmd = std::process::Command::new(&args[2]);
    cmd.args(&args[3..]);
    // SAFETY: chroot, chdir and the sandbox's syscalls in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::chroot(&root)?;
            nix::unistd::chdir("/")?;
            sandbox::apply(&sb).map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(())
        });
    }
    let e = cmd.exec();
    eprintln!("sandbox-run: {e}");
    std::process::exit(1);
}
