//! Lightwhale's init. `main.rs` runs it as PID 1; the library exposes the pure parts
//! (and the device I/O the host tests drive on loop devices).

pub use lightwhale_types::accounts;
pub mod clock;
pub use lightwhale_types::cmdline;
pub mod coldplug;
pub mod command;
pub mod config;
pub use lightwhale_types::facts;
pub mod hostname;
pub mod http_probe;
pub use lightwhale_types::image;
pub mod input;
pub mod kmod;
pub mod layout;
pub mod logger;
pub mod logs;
pub mod loopdev;
pub use lightwhale_types::mountinfo;
pub mod mounts;
pub mod net;
pub mod nocloud;
pub mod password;
pub mod persist;
pub mod power;
pub use lightwhale_types::release;
pub mod sandbox;
pub mod seccomp;
pub mod service_dirs;
pub mod stage1;
pub mod stage2;
pub mod supervisor;
pub mod sysctl;
pub mod system;

/// PID 1 is built with `panic = "abort"`, and an aborting PID 1 is a kernel panic that
/// scrolls every message away. This hook logs the panic and then stops like `fatal`,
/// so the machine stays up with the reason on the console. (A panic in the probe's
/// child replaces this hook with a plain exit; see sandbox.rs.)
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
