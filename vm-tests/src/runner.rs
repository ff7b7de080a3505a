//! Booting the ISO for a person at a terminal: `cargo xtask qemu` on the Debian path and
//! `nix run .#qemu` (the `lightwhale-qemu` binary) share this, options included.

use crate::qemu::{Boot, Config, Disk, Iface};
use crate::VmError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to boot the ISO.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Attach FILE as an extra IDE disk (repeatable). A disk that starts with the magic
    /// header becomes the persistence disk.
    #[arg(long = "disk", value_name = "FILE")]
    pub disks: Vec<PathBuf>,
    /// Boot with UEFI firmware (OVMF) instead of SeaBIOS.
    #[arg(long)]
    pub uefi: bool,
    /// Boot with UEFI Secure Boot enforced (OVMF with Microsoft's keys enrolled), as on
    /// most machines sold today. Implies --uefi. Only the Debian-path ISO is signed.
    #[arg(long)]
    pub secure_boot: bool,
    /// Attach the ISO as a virtio disk, the way a USB stick is seen.
    #[arg(long)]
    pub as_disk: bool,
    /// Guest RAM in MB.
    #[arg(long, value_name = "MB", default_value_t = 2048)]
    pub memory: u32,
    /// CPU acceleration: KVM where /dev/kvm works and the CPU has vmx or svm, else TCG.
    #[arg(long, value_enum)]
    pub accel: Option<crate::qemu::Accel>,
    /// Provision the machine from a cloud-init NoCloud seed: DIR holds meta-data, user-data
    /// and optionally network-config; it is made into an ISO labelled cidata and attached.
    #[arg(long, value_name = "DIR")]
    pub seed: Option<PathBuf>,
}

/// Checks the options before anything starts: a missing disk is one line that says how
/// to make one.
pub fn check(args: &RunArgs) -> Result<(), VmError> {
    for p in &args.disks {
        if !p.is_file() {
            return Err(VmError::Setup(format!(
                "disk {0} does not exist. Create it first, e.g. `truncate -s 2G {0}`, and to use it for persistence: `echo lightwhale-please-format-me | dd conv=notrunc of={0}`",
                p.display()
            )));
        }
    }
    if let Some(dir) = &args.seed {
        crate::seed::check_dir(dir)?;
    }
    Ok(())
}

/// The guide's machine for `iso`, with the serial console on this terminal.
pub fn config(iso: &Path, args: &RunArgs, scratch: &Path) -> Result<Config, VmError> {
    check(args)?;
    let boot = if args.as_disk { Boot::IsoAsDisk(iso.into(), Iface::Virtio) } else { Boot::Cdrom(iso.into()) };
    let mut config = Config::new(boot);
    config.disks = args.disks.iter().map(|p| Disk { path: p.clone(), iface: Iface::Ide, snapshot: false }).collect();
    config.uefi = args.uefi;
    config.secure_boot = args.secure_boot;
    config.memory_mb = args.memory;
    if let Some(a) = args.accel {
        config.accel = a;
    }
    if let Some(dir) = &args.seed {
        std::fs::create_dir_all(scratch).map_err(|e| VmError::Setup(format!("{}: {e}", scratch.display())))?;
        let image = scratch.join("seed.iso");
        crate::seed::iso(dir, &image)?;
        config.seed = Some(image);
    }
    config.interactive = true;
    if config.is_uefi() {
        std::fs::create_dir_all(scratch).map_err(|e| VmError::Setup(format!("{}: {e}", scratch.display())))?;
        let vars = scratch.join("OVMF_VARS.fd");
        let src = crate::qemu::ovmf_vars(config.secure_boot);
        std::fs::copy(&src, &vars).map_err(|e| {
            VmError::Setup(format!("copying the UEFI variable store {}: {e} (install ovmf)", src.display()))
        })?;
        config.ovmf_vars = Some(vars);
    }
    Ok(config)
}

/// Boots and waits until QEMU exits.
pub fn boot(config: &Config) -> Result<(), VmError> {
    let (ssh, http) = (config.forwards.first(), config.forwards.get(1));
    println!("==> booting with {} acceleration; log in as op / opsecret.", config.accel.name());
    if let (Some((s, _)), Some((h, _))) = (ssh, http) {
        println!("    SSH: ssh -p {s} op@127.0.0.1, HTTP: http://127.0.0.1:{h}/");
    }
    println!("    quit QEMU with Ctrl-A then X");
    let status = Command::new("qemu-system-x86_64")
        .args(config.args())
        .status()
        .map_err(|e| VmError::Setup(format!("starting qemu-system-x86_64: {e} (install QEMU)")))?;
    if !status.success() {
        return Err(VmError::Setup(format!(
            "QEMU exited with {status} (ports 10022/10080 busy? another QEMU running?)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's machine without options, under TCG: each test changes what it checks.
    fn plain() -> RunArgs {
        RunArgs {
            disks: vec![],
            uefi: false,
            secure_boot: false,
            as_disk: false,
            memory: 2048,
            accel: Some(crate::Accel::Tcg),
            seed: None,
        }
    }

    #[test]
    fn a_missing_disk_says_how_to_make_one() {
        let args = RunArgs { disks: vec!["/nonexistent/p.img".into()], accel: None, ..plain() };
        let e = config(Path::new("x.iso"), &args, Path::new("/tmp")).unwrap_err().to_string();
        assert!(e.contains("truncate -s 2G /nonexistent/p.img") && e.contains("lightwhale-please-format-me"), "{e}");
    }

    #[test]
    fn options_reach_the_command_line() {
        let args = RunArgs { as_disk: true, memory: 1024, ..plain() };
        let a = config(Path::new("x.iso"), &args, Path::new("/tmp")).unwrap().args().join(" ");
        assert!(a.contains("-m 1024") && a.contains("virtio-blk-pci,drive=bootiso"), "{a}");
        assert!(a.contains("-accel tcg") && a.contains("-cpu max"), "{a}");
    }

    #[test]
    fn a_seed_directory_becomes_an_attached_cidata_image() {
        let dir = std::env::temp_dir().join(format!("lw-runner-seed-{}", std::process::id()));
        let src = dir.join("seed");
        crate::seed::write_dir(&src, "instance-id: r\n", "#cloud-config\n", None).unwrap();
        let args = RunArgs { seed: Some(src), ..plain() };
        let a = config(Path::new("x.iso"), &args, &dir.join("scratch")).unwrap().args().join(" ");
        assert!(
            a.contains(&format!("file={},format=raw,if=virtio,readonly=on", dir.join("scratch/seed.iso").display())),
            "{a}"
        );
        let missing = RunArgs { seed: Some(dir.join("nope")), ..args };
        assert!(config(Path::new("x.iso"), &missing, &dir.join("scratch"))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secure_boot_brings_its_firmware_and_smm() {
        let args = RunArgs { secure_boot: true, as_disk: true, memory: 1024, ..plain() };
        let dir = std::env::temp_dir().join(format!("lw-runner-{}", std::process::id()));
        let a = config(Path::new("x.iso"), &args, &dir).unwrap().args().join(" ");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(a.contains("smm=on") && a.contains(crate::qemu::OVMF_SECBOOT_CODE), "{a}");
    }
}
