//! The end of every boot: after the services are stopped, switch the swap file off,
//! unmount what can be unmounted, leave the persistence device clean (read-only if it could
//! not be unmounted), then reboot, power off or halt.

use crate::service::signals::PowerRequest;
use crate::{mountinfo, persist};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use std::path::{Path, PathBuf};

/// Pure: mount points from /proc/self/mountinfo, most recently mounted first, without the
/// ones that must stay until the very end (/, /proc, /sys, /dev and what is below them).
pub fn unmount_order(mountinfo: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mountinfo::mount_points(mountinfo)
        .into_iter()
        .filter(|m| m != Path::new("/") && !["/proc", "/sys", "/dev"].iter().any(|k| m.starts_with(k)))
        .collect();
    v.reverse();
    v
}

pub fn finish(req: PowerRequest) -> ! {
    // The init's log file lives on what is unmounted next; from here on, console only.
    crate::logging::console::detach_file();
    persist::swap::off(Path::new(lightwhale_types::space::SWAP_FILE));
    nix::unistd::sync();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut failed = Vec::new();
    let order = unmount_order(&info);
    for m in &order {
        if let Err(e) = umount2(m, MntFlags::empty()) {
            failed.push(format!("{} ({e})", m.display()));
        }
    }
    let data_still_mounted = mountinfo::current().iter().any(|m| m == Path::new(persist::MOUNT_POINT));
    if data_still_mounted {
        match nix::mount::mount(
            None::<&str>,
            persist::MOUNT_POINT,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            Ok(()) => log::info!("shutdown: {} remounted read-only", persist::MOUNT_POINT),
            Err(e) => log::error!("shutdown: {} is still mounted read-write: {e}", persist::MOUNT_POINT),
        }
    }
    if failed.is_empty() {
        log::info!("shutdown: unmounted {} filesystems", order.len());
    } else {
        log::warn!("shutdown: could not unmount: {}", failed.join(", "));
    }
    nix::unistd::sync();
    let (mode, what) = match req {
        PowerRequest::Reboot => (RebootMode::RB_AUTOBOOT, "rebooting"),
        PowerRequest::Poweroff => (RebootMode::RB_POWER_OFF, "powering off"),
        PowerRequest::Halt => (RebootMode::RB_HALT_SYSTEM, "halted"),
    };
    log::info!("shutdown: {what}");
    let _ = reboot(mode);
    // Halt returns to us; PID 1 must never exit.
    loop {
        nix::unistd::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmount_order_is_reverse_and_keeps_kernel_filesystems() {
        let info = "\
22 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro
23 22 0:5 / /dev rw - devtmpfs devtmpfs rw
24 22 0:21 / /proc rw - proc proc rw
25 22 0:22 / /sys rw - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
27 22 0:24 / /run rw - tmpfs tmpfs rw
28 22 8:1 / /mnt/lightwhale-data rw - ext4 /dev/sda1 rw
29 22 0:30 / /etc rw - overlay overlay rw
30 22 0:31 / /mnt/my\\040disk rw - tmpfs tmpfs rw
";
        let order: Vec<PathBuf> =
            ["/mnt/my disk", "/etc", "/mnt/lightwhale-data", "/run"].iter().map(PathBuf::from).collect();
        assert_eq!(unmount_order(info), order);
    }
}
