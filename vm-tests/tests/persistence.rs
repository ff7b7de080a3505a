//! Persistence as the guide describes it: a disk with the magic header is claimed on the
//! first boot, SSH keys, web content and a `--restart unless-stopped` container survive
//! reboots, disks that did not ask for it are never touched. Plus power cuts. (A full disk,
//! a one-disk machine and `lightwhale.swap=off` are in `storage.rs`.)

use lightwhale_vm_tests::host::{self, Auth, Ssh};
use lightwhale_vm_tests::*;
use std::path::Path;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// A field of the persistence part of `lightwhale status --json`.
fn persistence(m: &mut Machine, key: &str) -> Result<String, VmError> {
    let st = m.status()?;
    Ok(st["persistence"][key].as_str().unwrap_or_default().to_string())
}

/// The line of the console that reports the persistence outcome of the current boot.
fn persistence_line(m: &mut Machine) -> Result<String, VmError> {
    m.wait_for_console_line("lightwhale: persistence ready:", 5 * MIN)
}

/// A disk with some non-zero content, so "unchanged" means something.
fn bystander_disk(path: &Path) -> Result<(), VmError> {
    host::blank_disk(path, 128 * MIB)?;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| VmError::Host(e.to_string()))?;
    let data: Vec<u8> = (0..MIB as usize).map(|i| (i * 7 + i / 513) as u8).collect();
    f.write_all_at(&data, 0).map_err(|e| VmError::Host(e.to_string()))?;
    f.write_all_at(&data, 100 * MIB).map_err(|e| VmError::Host(e.to_string()))
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn persistence_walkthrough() -> Result<(), VmError> {
    let a = artifacts()?;
    let dir = fresh_dir("persistence-disks")?;

    let disk = dir.join("persistence.img");
    host::magic_disk(&disk, 700 * MIB)?;
    // A disk that did not ask to be claimed, and the boot image with a forged header.
    let bystander = dir.join("bystander.img");
    bystander_disk(&bystander)?;
    let forged = dir.join("forged.iso");
    std::fs::copy(&a.iso, &forged).map_err(|e| VmError::Host(e.to_string()))?;
    host::write_magic_header(&forged)?;
    let bystander_before = host::sha256_of(&bystander)?;
    let forged_before = host::sha256_of(&forged)?;

    let mut config = Config::new(Boot::Cdrom(a.iso.clone()));
    config.disks = vec![
        Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false },
        Disk { path: bystander.clone(), iface: Iface::Virtio, snapshot: false },
        Disk { path: forged.clone(), iface: Iface::Virtio, snapshot: false },
    ];
    let mut m = Machine::start("persistence", config)?;

    // Boot 1: the claim, on the console.
    m.wait_for_console_text("scan: sda 700 MiB, magic header", 5 * MIN)?;
    m.wait_for_console_text("boot image", MIN)?;
    let claimed = m.wait_for_console_line("lightwhale: claim: claimed sda", 5 * MIN)?;
    println!("TIMING claim of a 700 MiB IDE disk: {claimed}");
    let line = persistence_line(&mut m)?;
    assert!(line.contains("sda1") && line.contains("newly claimed"), "{line}");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(persistence(&mut m, "device")?, "sda1");
    let uuid = persistence(&mut m, "uuid")?;
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(m.succeed("findmnt -n -o SOURCE /mnt/lightwhale-data", MIN)?.trim(), "/dev/sda1");
    assert_eq!(m.succeed("findmnt -n -o FSTYPE /mnt/lightwhale-data", MIN)?.trim(), "ext4");
    assert!(m.succeed("findmnt -n -o FSTYPE /etc", MIN)?.contains("overlay"));
    let swap = swap_file_size(&mut m)?;
    assert!(swap > 64 * MIB, "no swap file after the claim: {swap} bytes");

    // The user's changes: an SSH key installed from the host, web content, a container.
    let key = host::ssh_keygen(m.dir())?;
    let ssh = Ssh::new(m.host_port(22), "op", m.dir());
    host::install_key(&ssh, "opsecret", &key)?;
    let host_key = ssh.pinned_host_keys();
    assert!(!host_key.is_empty());
    m.succeed("echo 'persisted page' | sudo tee /var/www/index.html && echo boot-1 > ~/boot1.txt", MIN)?;
    m.wait_until_succeeds("d info", 5 * MIN)?;
    m.import_busybox_image("lw/httpd")?;
    m.succeed(
        "d run -d --restart unless-stopped --name web -p 80:80 -v /var/www:/public lw/httpd httpd -f -p 80 -h /public",
        3 * MIN,
    )?;
    assert!(host::http_get_retry(m.host_port(80), "/", 2 * MIN)?.contains("persisted page"));
    assert!(m.succeed("ls /mnt/lightwhale-data", MIN)?.contains("docker"));

    // Boot 2: everything is back, found by label, nothing reformatted.
    m.reboot()?;
    let line = persistence_line(&mut m)?;
    assert!(line.contains("sda1") && !line.contains("newly claimed"), "{line}");
    let page = host::http_get_retry(m.host_port(80), "/", 5 * MIN)?;
    assert!(page.contains("persisted page"), "{page}");
    // Key login without a password prompt, and the same host key as before (a changed one
    // fails the connection).
    let out = ssh.run_retry(Auth::Key(&key), "cat ~/boot1.txt", 3 * MIN)?;
    assert_eq!(out.trim(), "boot-1");
    assert_eq!(ssh.pinned_host_keys(), host_key);
    m.login("op", "opsecret", MIN)?;
    assert_eq!(persistence(&mut m, "uuid")?, uuid);
    assert!(m.succeed("d inspect -f '{{.HostConfig.RestartPolicy.Name}}' web", MIN)?.contains("unless-stopped"));
    assert_eq!(swap_file_size(&mut m)?, swap, "the swap file is not the same after a reboot");

    // Boot 3: still the same filesystem, and the file from boot 1.
    m.reboot()?;
    let line = persistence_line(&mut m)?;
    assert!(!line.contains("newly claimed"), "{line}");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("cat ~/boot1.txt", MIN)?.trim(), "boot-1");
    assert_eq!(persistence(&mut m, "uuid")?, uuid, "the persistence disk was reformatted");
    let boots = m.console_history()?;
    assert_eq!(boots.matches("claim sda: step 1/4").count(), 1, "claimed more than once in three boots");

    // The ACPI power button powers off cleanly: QEMU exits, the data disk is left clean.
    m.sudo("dmesg -n 7", MIN)?;
    let mark = m.console.mark();
    m.press_power_button()?;
    let off = m.console.text_since(mark);
    for expected in ["power button pressed", "dockerd stopped", "EXT4-fs (sda1): unmounting", "shutdown: powering off"]
    {
        assert!(off.contains(expected), "no {expected:?} after the power button:\n{off}");
    }
    assert!(!off.contains("could not unmount"), "{off}");

    assert_eq!(host::sha256_of(&bystander)?, bystander_before, "a disk without the header was written");
    assert_eq!(host::sha256_of(&forged)?, forged_before, "the boot image with a forged header was written");

    // lightwhale.persistence=tmpfs ignores the claimed disk completely.
    let disk_before = host::sha256_of(&disk)?;
    let mut config = Config::new(a.kernel_boot("lightwhale.persistence=tmpfs")?);
    config.disks = vec![Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false }];
    config.forwards.clear();
    let mut m = Machine::start("persistence-tmpfs", config)?;
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(persistence(&mut m, "mode")?, "tmpfs");
    m.succeed("test ! -e ~/boot1.txt && test ! -e /var/www/index.html", MIN)?;
    m.succeed("echo scribble > ~/scribble.txt && sync", MIN)?;
    m.shutdown()?;
    assert_eq!(host::sha256_of(&disk)?, disk_before, "lightwhale.persistence=tmpfs wrote to the persistence disk");
    Ok(())
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn power_cuts_during_claim_and_after_sync() -> Result<(), VmError> {
    let a = artifacts()?;
    let dir = fresh_dir("powercut-disks")?;
    let disk = dir.join("persistence.img");
    host::magic_disk(&disk, 700 * MIB)?;

    let mut config = Config::new(Boot::IsoAsDisk(a.iso.clone(), Iface::Virtio));
    config.disks = vec![Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false }];
    config.forwards.clear();
    let mut m = Machine::start("powercut", config)?;

    // Cut the power right as each step of the claim starts (steps 1 and 4 are single
    // writes, step 2 is mkfs: the cut lands in the middle of it). Steps 3 and 4 can take a
    // millisecond together, less than the host needs to cut the power after it saw step 3:
    // the claim may then be complete before the cut, and the next boot mounts the disk.
    for (i, step) in ["step 1/4", "step 2/4", "step 3/4", "step 4/4"].iter().enumerate() {
        if i > 0 {
            m.power_on()?;
        }
        let at = format!("claim sda: {step}");
        let found = m.wait_for_any(&[&at, "lightwhale: persistence ready:"], 5 * MIN)?;
        m.crash();
        if found == 1 {
            assert!(i >= 3, "the claim completed although the power was cut before step {i} of 4");
            println!("the claim had completed before the power cut at step {i}");
            break;
        }
        println!("power cut at: {at}");
    }
    // Whatever state the last cut left, this boot ends with working persistence.
    m.power_on()?;
    let line = persistence_line(&mut m)?;
    assert!(line.contains("sda1 (ext4"), "{line}");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(persistence(&mut m, "mode")?, "device");
    m.succeed("findmnt -n -o FSTYPE /mnt/lightwhale-data | grep -q ext4", MIN)?;

    // Data written and synced before a power cut survives it.
    m.succeed("echo synced-before-the-cut | sudo tee /var/www/synced.txt >/dev/null && sync", MIN)?;
    m.crash();
    m.power_on()?;
    m.wait_for_console_text("was not cleanly unmounted; running e2fsck -p", 5 * MIN)?;
    let line = persistence_line(&mut m)?;
    assert!(line.contains("sda1") && !line.contains("newly claimed"), "{line}");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("cat /var/www/synced.txt", MIN)?.trim(), "synced-before-the-cut");
    m.shutdown()?;
    Ok(())
}
