//! `cargo xtask deps`: the host tools the build and the tests need, installed with apt.

use crate::error::{Error, Result};
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
    ("grub-efi-amd64-bin", "UEFI boot loader"),
    ("grub-common", "grub-mkstandalone"),
    ("mtools", "fills the EFI system partition image"),
    ("dosfstools", "mkfs.vfat for the EFI system partition image"),
    ("cpio", "cross-checks the initramfs writer in the unit tests"),
    ("kmod", "depmod for the image's module tree"),
    ("openssl", "hashes the default password"),
    ("dpkg-dev", "dpkg-deb for the dependency stubs"),
    ("qemu-system-x86", "runs the image"),
    ("qemu-utils", "qemu-img for test disks"),
    ("ovmf", "UEFI firmware for QEMU"),
    ("openssh-client", "SSH into the VM in the tests"),
    ("curl", "HTTP checks in the tests"),
    ("e2fsprogs", "mke2fs/e2fsck for the host-side persistence tests"),
    ("util-linux", "losetup for the host-side persistence tests"),
    ("fdisk", "sfdisk cross-checks the partition table in the host tests"),
    ("nix-bin", "nix-instantiate checks the flake's pure parts"),
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

pub fn run() -> Result<()> {
    if !util::which("apt-get") {
        return Err(Error::Step {
            step: "deps",
            message: "apt-get not found: the Debian path needs a Debian or Ubuntu host (or use the Nix flake)".into(),
        });
    }
    let missing = missing();
    if missing.is_empty() {
        println!("deps: all {} host packages are installed", PACKAGES.len());
        return Ok(());
    }
    println!("deps: installing {}", missing.join(" "));
    let sudo: &[&str] =
        if std::fs::read_to_string("/proc/self/status").map(|s| s.contains("Uid:\t0\t")).unwrap_or(false) {
            &[]
        } else {
            &["sudo"]
        };
    let apt = |args: &[&str]| {
        let mut cmd = Command::new(if sudo.is_empty() { "apt-get" } else { "sudo" });
        if !sudo.is_empty() {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    util::run(
        "deps",
        &mut apt(&["update", "-q"]),
        "apt-get update failed: check the network and /etc/apt/sources.list",
    )?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    util::run("deps", &mut install, "apt-get install failed: see its message above")?;
    Ok(())
}
