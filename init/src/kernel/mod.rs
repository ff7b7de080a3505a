//! The kernel's side of the machine: modules and coldplug, sysctls, loop devices, and the
//! input device the power button reports on.

pub mod coldplug;
pub mod input;
pub mod kmod;
pub mod loopdev;
pub mod sysctl;
