//! The VM test harness: QEMU command lines, a `Machine` driven over its serial console,
//! and host-side helpers (HTTP, SSH, disk images) for the scenarios in `tests/`.

pub mod cluster;
pub mod console;
pub mod host;
pub mod machine;
pub mod qemu;
pub mod qmp;
pub mod runner;
pub mod seed;
pub mod segment;

pub use machine::{Machine, Output};
pub use qemu::{Accel, Boot, Config, Disk, Iface};

use std::path::{Path, PathBuf};

#[derive(thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Setup(String),
    #[error("{machine}: timed out after {secs} s waiting for {what}\n--- last console lines ---\n{console}")]
    Timeout { machine: String, what: String, secs: u64, console: String },
    #[error("{machine}: login as {user} failed\n{console}")]
    LoginFailed { machine: String, user: String, console: String },
    #[error("{machine}: `{command}` exited with {code}:\n{output}")]
    CommandFailed { machine: String, command: String, code: i32, output: String },
    #[error("{machine}: `{command}` succeeded but should have failed:\n{output}")]
    UnexpectedSuccess { machine: String, command: String, output: String },
    #[error("host: {0}")]
    Host(String),
}

// Test failures print Debug: make it the readable message.
impl std::fmt::Debug for VmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Scenario files (`tests/<name>.rs`) that run more than one machine at a time, and how
/// many; every other scenario runs one machine at a time. `cargo xtask test` runs scenarios
/// side by side when the host has cores to spare, and counts a scenario listed here as that
/// many. A new scenario that boots machines in parallel belongs here.
pub const MACHINES_AT_ONCE: &[(&str, usize)] = &[("swarm", 2)];

/// How many machines the scenario file `name` runs at a time.
pub fn machines_at_once(name: &str) -> usize {
    MACHINES_AT_ONCE.iter().find(|(n, _)| *n == name).map(|(_, k)| *k).unwrap_or(1)
}

/// The scenario file a test binary was built from: cargo names it `<file>-<16 hex digits>`.
pub fn scenario_of(exe_stem: &str) -> &str {
    match exe_stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        _ => exe_stem,
    }
}

/// Scratch space for machines (console logs, disks): target/vm-tests.
pub fn work_dir() -> PathBuf {
    std::env::var_os("LIGHTWHALE_VM_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target/vm-tests"))
}

/// The size of the swap file in use, by `lightwhale status --json` (0: none).
pub fn swap_file_size(m: &mut Machine) -> Result<u64, VmError> {
    let st = m.status()?;
    let areas = st["swap"].as_array().cloned().unwrap_or_default();
    let file = areas.iter().find(|a| a["path"] == lightwhale_types::constants::SWAP_FILE);
    Ok(file.and_then(|a| a["size_bytes"].as_u64()).unwrap_or(0))
}

/// An empty directory of this name under the work directory (emptied if it was there).
pub fn fresh_dir(name: &str) -> Result<PathBuf, VmError> {
    let dir = work_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Host(e.to_string()))?;
    Ok(dir)
}

/// The built artefacts the VM tests boot.
pub struct Artifacts {
    pub iso: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub rootfs_img: PathBuf,
}

pub fn artifacts() -> Result<Artifacts, VmError> {
    let out = std::env::var_os("LIGHTWHALE_OUT").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("out"));
    Artifacts::in_out_dir(&out)
}

/// The one retry loop behind every wait in the harness: calls `attempt` until it succeeds
/// or `timeout` has passed (then returns the last error), pausing `pause` in between.
pub fn retry<T>(
    timeout: std::time::Duration,
    pause: std::time::Duration,
    mut attempt: impl FnMut(std::time::Duration) -> Result<T, VmError>,
) -> Result<T, VmError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match attempt(left) {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() + pause >= deadline => return Err(e),
            Err(_) => std::thread::sleep(pause),
        }
    }
}

/// Kernel command line of the ISO's default entry, for direct-kernel boots.
pub const CMDLINE: &str = lightwhale_types::cmdline::KERNEL_CMDLINE;

impl Artifacts {
    /// The artefacts a `cargo xtask iso` left in `out` (this tree's out/, or another
    /// checkout's, which `cargo xtask bench --baseline` boots).
    pub fn in_out_dir(out: &Path) -> Result<Artifacts, VmError> {
        let a = Artifacts {
            iso: out.join("lightwhale.iso"),
            kernel: out.join("build/vmlinuz"),
            initramfs: out.join("build/initramfs.img"),
            rootfs_img: out.join("build/rootfs.img"),
        };
        for p in [&a.iso, &a.kernel, &a.initramfs, &a.rootfs_img] {
            if !p.is_file() {
                return Err(VmError::Setup(format!(
                    "{} is missing: run the VM tests with `cargo xtask test`, which builds the image first",
                    p.display()
                )));
            }
        }
        Ok(a)
    }

    /// A direct-kernel boot of the same kernel and initrds the ISO carries, with extra
    /// kernel options.
    pub fn kernel_boot(&self, extra_cmdline: &str) -> Result<Boot, VmError> {
        let dir = work_dir();
        std::fs::create_dir_all(&dir).map_err(|e| VmError::Setup(e.to_string()))?;
        // One file per build, so boots of two builds (bench --baseline) never share one.
        let build = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.initramfs.hash(&mut h);
            h.finish()
        };
        let initrd = dir.join(format!("initrd-combined-{build:016x}.img"));
        let mut data = std::fs::read(&self.initramfs).map_err(|e| VmError::Setup(e.to_string()))?;
        data.extend(std::fs::read(&self.rootfs_img).map_err(|e| VmError::Setup(e.to_string()))?);
        // Written aside and renamed: scenarios run side by side (`cargo xtask test`), and a
        // machine that is booting from the file must never see it rewritten under it.
        let part = dir.join(format!("initrd-combined-{build:016x}.img.{}", std::process::id()));
        std::fs::write(&part, data).map_err(|e| VmError::Setup(e.to_string()))?;
        std::fs::rename(&part, &initrd).map_err(|e| VmError::Setup(e.to_string()))?;
        Ok(Boot::Kernel { kernel: self.kernel.clone(), initrd, append: format!("{CMDLINE} {extra_cmdline}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_names_its_scenario_file() {
        assert_eq!(scenario_of("swarm-0123456789abcdef"), "swarm");
        assert_eq!(scenario_of("secure_boot-fedcba9876543210"), "secure_boot");
        assert_eq!(scenario_of("xtask"), "xtask");
        assert_eq!(scenario_of("lightwhale-qemu"), "lightwhale-qemu", "not a cargo hash");
        assert_eq!(machines_at_once("swarm"), 2);
        assert_eq!(machines_at_once("persistence"), 1);
    }
}
