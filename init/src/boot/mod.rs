//! The boot, phase by phase (`main.rs` runs them in this order):
//!
//! 1. `stage1::run`: in the initramfs: the kernel's filesystems, the image verified and
//!    mounted, switch root.
//! 2. `assemble::assemble`: in the image, before any service: drivers, RAM mounts,
//!    persistence, overlays, the logs' place, the NoCloud seed.
//! 3. `stage2::run`: the machine set up (clock, machine id, host name, links, cgroup2,
//!    sysctls), then the services until a power request.
//! 4. `power::finish`: services stopped, filesystems unmounted, the persistence disk left
//!    clean, reboot or power-off.

pub mod assemble;
pub mod power;
pub mod stage1;
pub mod stage2;
