//! Lightwhale's init. `main.rs` runs it as PID 1. Its rooms:
//!
//! - `boot`: the boot as named phases: stage 1 in the initramfs, the system assembled in the
//!   image, stage 2 (services), power-off.
//! - `kernel`: modules and coldplug, sysctls, loop devices, the power button's input device.
//! - `fs`: the RAM mounts and overlays planned from `init.ron` (`layout`) and carried out.
//! - `persist`: the persistence device: the sandboxed scan and what a device's first bytes say,
//!   the decision, the claim, the mount.
//! - `nocloud`: finding, mounting and applying a cloud-init seed (its reading is
//!   `lightwhale_nocloud`'s).
//! - `machine`: the host name, the clock, the network links.
//! - `service`: the supervisor and what it needs: the services' directories, readiness probes,
//!   the default-password notices.
//! - `sandbox`: the children the init confines (Landlock, seccomp, no capabilities).
//! - `logging`: the console and the init's own log; the services' log files.
//!
//! The library exposes what the host and VM tests drive (the claim on loop devices, the
//! sandboxes, the supervisor's state machine).

pub use lightwhale_types::{accounts, cmdline, facts, image, mountinfo, release};

pub mod boot;
pub mod command;
pub mod config;
pub mod fs;
pub mod kernel;
pub mod logging;
pub mod machine;
pub mod nocloud;
pub mod persist;
pub mod sandbox;
pub mod service;

/// PID 1 is built with `panic = "abort"`, and an aborting PID 1 is a kernel panic that
/// scrolls every message away. This hook logs the panic and then stops like `fatal`,
/// so the machine stays up with the reason on the console. (A panic in the probe's
/// child replaces this hook with a plain exit; see sandbox/mod.rs.)
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        fatal(&format!("internal error: the init panicked{at}: {msg}. Please report this."))
    }));
}

/// Stops the boot with a message the user can act on. PID 1 must not exit (the kernel
/// would panic and the message would scroll away), so it waits for Ctrl-Alt-Del, which
/// the kernel turns into an immediate reboot while CAD is enabled.
pub fn fatal(message: &str) -> ! {
    log::error!("{message}");
    log::error!("Lightwhale cannot continue booting. Press Ctrl-Alt-Del to reboot.");
    loop {
        // Keep reaping, in case something was started before the failure.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(-1), None);
        nix::unistd::sleep(60);
    }
}
