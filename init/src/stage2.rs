//! Stage 2, in the real root: the system set-up that services need, then the supervisor
//! until a power request, then a clean shutdown.

use crate::mounts;
use crate::supervisor::{self, Supervisor};
use crate::system::System;
use crate::{hostname, logger, net, power, sysctl};
use nix::mount::MsFlags;
use nix::sys::signal::{sigprocmask, SigmaskHow};
use std::path::Path;

pub fn run(system: System, opts: &crate::cmdline::Options) -> ! {
    let step = logger::Step::start("system set up");
    set_clock_forward();
    let machine_id = ensure_machine_id();
    let hostname = hostname::choose(std::fs::read_to_string(hostname::HOSTNAME_FILE).ok().as_deref(), &machine_id);
    if let Err(e) = hostname::apply(&hostname) {
        log::warn!("setting hostname {hostname}: {e}");
    }
    let links = net::links_up();
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
    let n = sysctl::apply_all();
    step.done(&format!("hostname {hostname}, {} up, cgroup2, {n} sysctls", links.join(" ")));

    // From here on signals are read from a signalfd; children get a clean mask (std resets it).
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&supervisor::handled_signals()), None) {
        log::error!("blocking signals: {e}");
    }
    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate hard reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);

    let notices = crate::password::Notices::new(&system.image_shadow);
    let mut sup = match Supervisor::new(system.config.services, &system.config.seccomp, opts.seccomp, notices) {
        Ok(s) => s,
        Err(e) => crate::fatal(&format!("cannot set up the service supervisor: {e}")),
    };
    let finished = logger::uptime();
    log::info!("boot finished in {finished:.2} s since the kernel started; starting services");
    let boot = crate::facts::Boot { steps: logger::boot_steps(), finished_s: Some(finished) };
    if let Err(e) = crate::facts::write(crate::facts::BOOT, &boot) {
        log::warn!("writing {}: {e}", crate::facts::BOOT);
    }
    logger::quiet_console();
    let request = sup.run();
    log::info!("shutdown: {request:?} requested");
    sup.stop_all();
    power::finish(request)
}

/// The clock never starts before the image's build date (a flat RTC battery would make
/// every certificate "not yet valid"); time sync corrects it from there.
fn set_clock_forward() {
    let release = crate::release::current();
    match crate::clock::not_before(release.build_date) {
        Ok(Some((was, now))) => {
            log::warn!(
                "clock: the hardware clock said {}, before this image was built; set to {} until time sync corrects it",
                crate::clock::utc(was),
                crate::clock::utc(now)
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
