//! Stage 2, in the real root: the system set-up that services need, then the supervisor
//! until a power request, then a clean shutdown.

use crate::boot::assemble::System;
use crate::boot::power;
use crate::fs::mounts;
use crate::kernel::sysctl;
use crate::logging::console;
use crate::machine::{hostname, net};
use crate::service::signals;
use crate::service::supervisor::Supervisor;
use nix::mount::MsFlags;
use nix::sys::signal::{sigprocmask, SigmaskHow};
use std::path::Path;

pub fn run(system: System, opts: &crate::cmdline::Options) -> ! {
    set_up_machine();
    take_over_signals();
    let mut sup = supervisor(system, opts);
    record_boot_finished();
    console::quiet_console();
    let request = sup.run();
    log::info!("shutdown: {request:?} requested");
    sup.stop_all();
    power::finish(request)
}

/// What services need of the machine: its clock, id and name, the network links, the
/// kernel's remaining filesystems, the sysctls.
fn set_up_machine() {
    let step = console::Step::start("system set up");
    set_clock_forward();
    let machine_id = ensure_machine_id();
    let hostname = hostname::choose(std::fs::read_to_string(hostname::HOSTNAME_FILE).ok().as_deref(), &machine_id);
    if let Err(e) = hostname::apply(&hostname) {
        log::warn!("setting hostname {hostname}: {e}");
    }
    let links = net::links_up();
    mount_kernel_filesystems();
    let n = sysctl::apply_all();
    step.done(&format!("hostname {hostname}, {} up, cgroup2, {n} sysctls", links.join(" ")));
}

/// The kernel filesystems stage 1 did not need: ptys, shared memory, message queues,
/// securityfs, cgroup2, and the firmware's variables on UEFI.
fn mount_kernel_filesystems() {
    for (src, target, fstype, flags, data) in [
        ("devpts", "/dev/pts", "devpts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("gid=5,mode=620,ptmxmode=666")),
        ("tmpfs", "/dev/shm", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777")),
        ("mqueue", "/dev/mqueue", "mqueue", MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None),
        // AppArmor's interface: dockerd loads docker-default through it.
        (
            "securityfs",
            "/sys/kernel/security",
            "securityfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("nsdelegate"),
        ),
    ] {
        let t = Path::new(target);
        if let Err(e) = mounts::mkdir_p(t).and_then(|_| mounts::fs_once(src, t, fstype, flags, data)) {
            log::warn!("{e}");
        }
    }
    // The firmware's variables, read-only (writing some of them can make a machine
    // unbootable): `lightwhale status` reads the SecureBoot variable there. UEFI only.
    let efivars = Path::new("/sys/firmware/efi/efivars");
    if efivars.is_dir() {
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if let Err(e) = mounts::fs_once("efivarfs", efivars, "efivarfs", flags, None) {
            log::warn!("{e}");
        }
    }
}

/// From here on signals are read from a signalfd; children get a clean mask (std resets it).
fn take_over_signals() {
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals::handled_signals()), None) {
        log::error!("blocking signals: {e}");
    }
    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate hard reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);
}

/// The supervisor over the modules' services; a configuration it cannot use stops the boot.
fn supervisor(system: System, opts: &crate::cmdline::Options) -> Supervisor {
    let notices = crate::service::password_notices::Notices::new(&system.image_shadow);
    let chores = crate::service::chores::Chores::new(notices, system.reserve);
    match Supervisor::new(system.config.services, &system.config.seccomp, opts.seccomp, chores) {
        Ok(s) => s,
        Err(e) => crate::fatal(&format!("cannot set up the service supervisor: {e}")),
    }
}

/// The boot's steps and duration, for `lightwhale status`.
fn record_boot_finished() {
    let finished = console::uptime();
    log::info!("boot finished in {finished:.2} s since the kernel started; starting services");
    let boot = crate::facts::Boot { steps: console::boot_steps(), finished_s: Some(finished) };
    if let Err(e) = crate::facts::write(crate::facts::BOOT, &boot) {
        log::warn!("writing {}: {e}", crate::facts::BOOT);
    }
}

/// The clock never starts before the image's build date (a flat RTC battery would make
/// every certificate "not yet valid"); time sync corrects it from there.
fn set_clock_forward() {
    let release = crate::release::current();
    match crate::machine::clock::not_before(release.build_date) {
        Ok(Some((was, now))) => {
            log::warn!(
                "clock: the hardware clock said {}, before this image was built; set to {} until time sync corrects it",
                crate::machine::clock::utc(was),
                crate::machine::clock::utc(now)
            )
        }
        Ok(None) => {}
        Err(e) => log::warn!("clock: could not set the clock forward to the build date: {e}"),
    }
}

/// A stable machine id, kept in the persisted /etc; returns it.
fn ensure_machine_id() -> String {
    let path = Path::new("/etc/machine-id");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let t = current.trim();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return t.to_string();
    }
    let mut buf = [0u8; 16];
    // SAFETY: buf is valid for writes of its length.
    unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let id: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    if let Err(e) = std::fs::write(path, format!("{id}\n")) {
        log::warn!("writing {}: {e}", path.display());
    }
    id
}
