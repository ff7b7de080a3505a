//! Storage on a real machine's terms: a one-disk machine (the ISO written to its only disk,
//! a partition added after the image and opted in) gets persistence on that partition alone,
//! swap to a file there, and stays usable when the disk fills up: Docker and key login come
//! back after a reboot on a full disk, nothing is lost, and the warning goes once Docker has
//! freed space. `lightwhale.swap=off` does without swap.

use lightwhale_types::constants::SWAP_FILE;
use lightwhale_vm_tests::host::{self, Auth, Ssh};
use lightwhale_vm_tests::*;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// The first `len` bytes of a file, hashed.
fn sha256_of_head(path: &Path, len: u64) -> Result<String, VmError> {
    let f = std::fs::File::open(path).map_err(|e| VmError::Host(e.to_string()))?;
    lightwhale_types::image::sha256_hex(&mut f.take(len)).map_err(|e| VmError::Host(e.to_string()))
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn one_disk_machine_swap_and_a_full_disk() -> Result<(), VmError> {
    let a = artifacts()?;
    let dir = fresh_dir("storage-disks")?;
    let disk = dir.join("only-disk.img");
    let part_start = host::one_disk(&disk, &a.iso, 640 * MIB)?;
    let image_before = sha256_of_head(&disk, part_start)?;

    let mut config = Config::new(Boot::WrittenDisk(disk.clone(), Iface::Ide));
    config.memory_mb = 2048;
    let mut m = Machine::start("storage", config)?;

    // Boot 1: the opted-in partition is claimed alone; swap is made on it.
    m.wait_for_console_text("claim sda3: step 1/4", 5 * MIN)?;
    let line = m.wait_for_console_line("lightwhale: persistence ready:", 5 * MIN)?;
    assert!(line.contains("sda3") && line.contains("newly claimed"), "{line}");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("findmnt -n -o SOURCE /mnt/lightwhale-data", MIN)?.trim(), "/dev/sda3");
    let st = m.status()?;
    assert_eq!(st["persistence"]["device"], "sda3", "{st}");
    // The size rule for a 2 GiB machine and a 473 MiB partition: an eighth of the filesystem.
    let fs_bytes = st["persistence"]["size_bytes"].as_u64().unwrap_or(0);
    let rule = lightwhale_types::space::swap_bytes(2048 * MIB, fs_bytes);
    let file_bytes: u64 = m.sudo(&format!("stat -c %s {SWAP_FILE}"), MIN)?.trim().parse().unwrap_or(0);
    assert_eq!(file_bytes, rule, "a swap file of {file_bytes} bytes for a filesystem of {fs_bytes}");
    // The kernel counts the file less its header page (and the last partial pages).
    let swap = swap_file_size(&mut m)?;
    assert!(swap <= rule && swap + 16 * 1024 >= rule, "{swap} bytes of swap in use from a file of {rule}");
    assert!(m.succeed("lightwhale status", MIN)?.contains("Swap"), "lightwhale status shows no swap line");
    let reserve = st["persistence"]["reserve"].clone();
    assert_eq!(reserve["held"], true, "no reserve after the claim: {reserve}");
    assert_eq!(m.sudo("stat -c %a /mnt/lightwhale-data/reserve", MIN)?.trim(), "600");

    let key = host::ssh_keygen(m.dir())?;
    let ssh = Ssh::new(m.host_port(22), "op", m.dir());
    host::install_key(&ssh, "opsecret", &key)?;
    m.succeed("echo kept > ~/before-full.txt", MIN)?;
    m.wait_until_succeeds("d info", 5 * MIN)?;
    m.import_busybox_image("lw/busybox")?;

    // Fill the disk as a container's download and a root process do.
    m.execute("d run --rm -v filler:/fill lw/busybox dd if=/dev/zero of=/fill/zeros bs=1M", 15 * MIN)?;
    let root = m.sudo("dd if=/dev/zero of=/root/fill bs=1M 2>/tmp/dd.err; sync; cat /tmp/dd.err", 15 * MIN)?;
    assert!(root.contains("No space left on device"), "the disk did not fill up: {root}");
    let full = m.status()?;
    assert!(full["warnings"].to_string().contains("persistence disk is nearly full"), "{full}");

    // Boot 2 on a full disk: the init releases the reserve before anything writes to it.
    m.reboot()?;
    let warning = m.wait_for_console_line("THE PERSISTENCE DISK IS FULL", 5 * MIN)?;
    println!("full disk at boot: {warning}");
    let version = ssh.run_retry(Auth::Key(&key), "docker info --format '{{.ServerVersion}}'", 5 * MIN)?;
    assert!(!version.trim().is_empty(), "docker info over SSH answered nothing");
    m.login("op", "opsecret", 5 * MIN)?;
    let st = m.status()?;
    assert_eq!(st["persistence"]["reserve"]["released_at_boot"], true, "{st}");
    assert!(st["warnings"].to_string().contains("the persistence disk is full"), "{st}");
    let released = format!("released its {} MiB reserve", reserve["bytes"].as_u64().unwrap_or(0) / MIB);
    assert!(m.succeed("lightwhale status", MIN)?.contains(&released), "no '{released}' in lightwhale status");
    assert_eq!(m.succeed("cat ~/before-full.txt", MIN)?.trim(), "kept", "a file was lost on the full disk");
    assert_eq!(swap_file_size(&mut m)?, swap, "the swap file is not in use after the reboot");

    // Docker frees the space; the reserve comes back within the init's half-minute chores,
    // and with it the warning goes.
    m.succeed("d volume rm filler", 5 * MIN)?;
    m.sudo("rm /root/fill", MIN)?;
    let after = retry(3 * MIN, Duration::from_secs(5), |_| {
        let st = m.status()?;
        match st["persistence"]["reserve"]["held"] == true {
            true => Ok(st),
            false => Err(VmError::Setup(format!("the reserve is not back after space was freed: {st}"))),
        }
    })?;
    assert!(!after["warnings"].to_string().contains("persistence disk"), "{after}");
    m.shutdown()?;
    assert_eq!(sha256_of_head(&disk, part_start)?, image_before, "the boot image's part of the disk was written");

    // lightwhale.swap=off: the same persistence, no swap.
    let mut config = Config::new(a.kernel_boot("lightwhale.swap=off")?);
    config.disks = vec![Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false }];
    let mut m = Machine::start("storage-noswap", config)?;
    m.wait_for_console_text("swap: off (lightwhale.swap=off)", 5 * MIN)?;
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("findmnt -n -o SOURCE /mnt/lightwhale-data", MIN)?.trim(), "/dev/sda3");
    assert_eq!(m.succeed("cat ~/before-full.txt", MIN)?.trim(), "kept");
    assert_eq!(m.succeed("wc -l < /proc/swaps", MIN)?.trim(), "1", "swap is on with lightwhale.swap=off");
    m.shutdown()?;
    assert_eq!(sha256_of_head(&disk, part_start)?, image_before, "the boot image's part of the disk was written");
    Ok(())
}
