//! Lightwhale's init. `main.rs` runs it as PID 1; the library exposes the pure parts
//! (and the device I/O the host tests drive on loop devices).

pub mod accounts;
pub mod cmdline;
pub mod coldplug;
pub mod command;
pub mod config;
pub mod early;
pub mod image;
pub mod input;
pub mod kmod;
pub mod layout;
pub mod logger;
pub mod loopdev;
pub mod mountinfo;
pub mod mounts;
pub mod net;
pub mod nocloud;
pub mod persist;
pub mod power;
pub mod sandbox;
pub mod stage1;
pub mod stage2;
pub mod supervisor;
pub mod sysctl;

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
