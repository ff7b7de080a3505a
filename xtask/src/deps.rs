//! `cargo xtask deps`: the host tools the build and the tests need, installed with apt.

use crate::error::{Error, IoContext, Result};
use crate::util;
use std::process::Command;

/// Debian/Ubuntu package names and why each is needed.
pub const PACKAGES: &[(&str, &str)] = &[
    ("mmdebstrap", "assembles the root filesystem from .debs"),
    ("debian-archive-keyring", "verifies Debian's package archive"),
    ("squashfs-tools", "mksquashfs"),
    ("xorriso", "builds the hybrid ISO"),
    ("isolinux", "BIOS boot loader for CD"),
    ("syslinux-common", "ldlinux.c32 for ISOLINUX"),
    ("grub-efi-amd64-bin", "GRUB modules for an unsigned UEFI loader (the Secure Boot test's refused image; the ISO ships Debian's signed GRUB, taken from its .deb)"),
    ("grub-common", "grub-mkimage for that unsigned loader"),
    ("mtools", "fills the EFI system partition image"),
    ("dosfstools", "mkfs.vfat for the EFI system partition image"),
    ("cpio", "cross-checks the initramfs writer in the unit tests"),
    ("kmod", "depmod for the image's module tree"),
    ("xz-utils", "decompresses the kernel modules before they go into the squashfs"),
    ("openssl", "hashes the default password"),
    ("dpkg-dev", "dpkg-deb for the dependency stubs"),
    ("qemu-system-x86", "runs the image"),
    ("qemu-utils", "qemu-img for test disks"),
    ("ovmf", "UEFI firmware for QEMU, also with Secure Boot and Microsoft's keys"),
    ("openssh-client", "SSH into the VM in the tests"),
    ("curl", "HTTP checks in the tests"),
    ("sudo", "visudo checks a seed's sudoers files in the host tests"),
    ("e2fsprogs", "mke2fs/e2fsck for the host-side persistence tests"),
    ("util-linux", "losetup for the host-side persistence tests"),
    ("fdisk", "sfdisk cross-checks the partition table in the host tests"),
    ("nix-bin", "nix-instantiate checks the flake's pure parts"),
    ("hostapd", "test only: the access point of the Wi-Fi VM test (copied into the VM, not part of the image)"),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn missing() -> Vec<&'static str> {
    PACKAGES.iter().map(|(p, _)| *p).filter(|p| !installed(p)).collect()
}

/// QEMU's major version, from `qemu-system-x86_64 --version`.
fn qemu_major() -> Option<u32> {
    let out = Command::new("qemu-system-x86_64").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

/// Debian 12 ships QEMU 7.2, whose multi-threaded TCG breaks the guest kernel when it
/// patches its own code (an int3 oops as soon as Docker loads netfilter modules; seen on
/// our build machines). bookworm-backports has QEMU 10, which works.
const MIN_QEMU: u32 = 8;
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/lightwhale-bookworm-backports.list";

fn codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_default()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// `cmd args...`, through sudo unless we are root.
fn privileged(cmd: &str, args: &[&str]) -> Command {
    let mut c = if is_root() { Command::new(cmd) } else { Command::new("sudo") };
    if !is_root() {
        c.arg(cmd);
    }
    c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn has_backports_source() -> bool {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        texts.extend(rd.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()));
    }
    texts.iter().any(|t| t.lines().any(|l| !l.trim_start().starts_with('#') && l.contains("bookworm-backports")))
}

pub fn run() -> Result<()> {
    if !util::which("apt-get") {
        return Err(Error::Step {
            step: "deps",
            message: "apt-get not found: the Debian path needs a Debian or Ubuntu host (or use the Nix flake)".into(),
        });
    }
    let missing = missing();
    let qemu_old = || qemu_major().is_some_and(|v| v < MIN_QEMU);
    if missing.is_empty() && !qemu_old() {
        return Ok(());
    }
    if !missing.is_empty() {
        println!("deps: installing {}", missing.join(" "));
        util::run(
            "deps",
            &mut privileged("apt-get", &["update", "-q"]),
            "apt-get update failed: check the network and /etc/apt/sources.list",
        )?;
        let mut install = privileged("apt-get", &["install", "-y", "-q", "--no-install-recommends"]);
        install.args(&missing);
        util::run("deps", &mut install, "apt-get install failed: see its message above")?;
    }
    if qemu_old() {
        if codename() != "bookworm" {
            return Err(Error::Step {
                step: "deps",
                message: format!(
                    "QEMU {} is too old: {MIN_QEMU} or newer is needed (older TCG corrupts the guest kernel); install a newer qemu-system-x86",
                    qemu_major().unwrap_or(0)
                ),
            });
        }
        println!("deps: Debian 12's QEMU 7.2 crashes the guest under TCG; installing QEMU 10 from bookworm-backports");
        if !has_backports_source() {
            let line = "deb http://deb.debian.org/debian bookworm-backports main\n";
            let mut tee = privileged("tee", &[BACKPORTS_LIST]);
            let mut child = tee
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|source| Error::Spawn { step: "deps", program: "tee".into(), source })?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin.write_all(line.as_bytes()).ctx("deps", BACKPORTS_LIST)?;
            }
            let _ = child.wait();
        }
        util::run("deps", &mut privileged("apt-get", &["update", "-q"]), "apt-get update failed: check the network")?;
        util::run(
            "deps",
            &mut privileged(
                "apt-get",
                &[
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "-t",
                    "bookworm-backports",
                    "qemu-system-x86",
                    "qemu-utils",
                ],
            ),
            "installing QEMU from bookworm-backports failed: see its message above",
        )?;
    }
    Ok(())
}
