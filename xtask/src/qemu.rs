//! `cargo xtask qemu`: boot the ISO the way the guide does, console on this terminal.

use crate::build::{self, Ctx};
use crate::error::{Error, Result};
use lightwhale_vm_tests::{Boot, Config, Disk, Iface};
use std::path::PathBuf;
use std::process::Command;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let mut disks = Vec::new();
    let mut uefi = false;
    let mut as_disk = false;
    let mut memory = 2048;
    let mut no_build = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--disk" => {
                let p = PathBuf::from(it.next().ok_or_else(|| Error::Usage("qemu: --disk needs a file".into()))?);
                if !p.is_file() {
                    return Err(Error::Usage(format!(
                        "qemu: disk {} does not exist. Create it first, e.g. `truncate -s 2G {0}`, and to use it for persistence: `echo lightwhale-please-format-me | dd conv=notrunc of={0}`",
                        p.display()
                    )));
                }
                disks.push(Disk { path: p, iface: Iface::Ide, snapshot: false });
            }
            "--uefi" => uefi = true,
            "--as-disk" => as_disk = true,
            "--no-build" => no_build = true,
            "--memory" => {
                memory = it
                    .next()
                    .and_then(|m| m.parse().ok())
                    .ok_or_else(|| Error::Usage("qemu: --memory needs a number of MB".into()))?
            }
            other => return Err(Error::Usage(format!("qemu: unknown option {other}"))),
        }
    }
    let iso = if no_build {
        let p = build::paths(ctx).iso;
        if !p.is_file() {
            return Err(Error::Usage(format!("qemu: {} does not exist; run without --no-build", p.display())));
        }
        p
    } else {
        build::iso(ctx, build::Options::default())?.iso
    };
    let mut config = Config::new(if as_disk { Boot::IsoAsDisk(iso, Iface::Virtio) } else { Boot::Cdrom(iso) });
    config.disks = disks;
    config.uefi = uefi;
    config.memory_mb = memory;
    config.interactive = true;
    if uefi {
        let vars = ctx.build.join("OVMF_VARS.fd");
        std::fs::copy(lightwhale_vm_tests::qemu::OVMF_VARS, &vars).map_err(|e| Error::Step {
            step: "qemu",
            message: format!("copying the UEFI variable store: {e} (run `cargo xtask deps`)"),
        })?;
        config.ovmf_vars = Some(vars);
    }
    println!("==> booting; log in as op / opsecret. SSH: ssh -p 10022 op@127.0.0.1, HTTP: http://127.0.0.1:10080/");
    println!("    quit QEMU with Ctrl-A then X");
    let status = Command::new("qemu-system-x86_64").args(config.args()).status().map_err(|source| Error::Spawn {
        step: "qemu",
        program: "qemu-system-x86_64".into(),
        source,
    })?;
    if !status.success() {
        return Err(Error::Step {
            step: "qemu",
            message: format!("QEMU exited with {status} (ports 10022/10080 busy? another QEMU running?)"),
        });
    }
    Ok(())
}
