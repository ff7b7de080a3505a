//! Secure Boot: the ISO boots on firmware that enforces it (OVMF with Microsoft's keys
//! enrolled), through Debian's signed shim, GRUB and kernel, and the system works as
//! without it. And the same firmware refuses an image whose loader is not signed, which
//! shows that the firmware really enforces Secure Boot.
//!
//! Only the Debian-path ISO carries the signed chain; the flake's VM check skips these
//! (`--skip secure_boot` in nix/lightwhale.nix).

use lightwhale_vm_tests::machine::shell_quote;
use lightwhale_vm_tests::*;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// `sudo sh -c cmd` that may fail (the harness's `sudo` requires success).
fn sudo_execute(m: &mut Machine, cmd: &str) -> Result<Output, VmError> {
    m.execute(&format!("printf '%s\\n' opsecret | sudo -S -p '' sh -c {}", shell_quote(cmd)), MIN)
}

/// Cuts a module's appended signature off (the 12-byte `struct module_signature` before
/// the magic ends in the big-endian length of the signature), leaving the module itself,
/// which modinfo must still read, now without a signature.
const STRIP_SIGNATURE: &str = "m=$(/usr/sbin/modinfo -n dummy) && size=$(stat -c %s \"$m\") && \
    len=$(tail -c 32 \"$m\" | head -c 4 | od -An -tu1 | awk '{print $1*16777216+$2*65536+$3*256+$4}') && \
    head -c $((size - 40 - len)) \"$m\" > /tmp/dummy-unsigned.ko && \
    test \"$(/usr/sbin/modinfo -F name /tmp/dummy-unsigned.ko)\" = dummy && \
    test -z \"$(/usr/sbin/modinfo -F sig_id /tmp/dummy-unsigned.ko)\"";

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn secure_boot_signed_chain_boots_and_works() -> Result<(), VmError> {
    let a = artifacts()?;
    let dir = work_dir().join("secure-boot-disks");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Host(e.to_string()))?;
    let disk = dir.join("persistence.img");
    host::magic_disk(&disk, 700 * MIB)?;

    // The ISO as a disk, like a USB stick in a PC with Secure Boot on.
    let mut c = Config::new(Boot::IsoAsDisk(a.iso.clone(), Iface::Virtio));
    c.secure_boot = true;
    c.disks = vec![Disk { path: disk, iface: Iface::Ide, snapshot: false }];
    c.forwards.clear();
    let mut m = Machine::start("secure-boot-disk", c)?;
    // GRUB's menu (the ISO's grub.cfg, found through the ESP's) with both entries.
    m.wait_for_console_text("Lightwhale (RAM only", 5 * MIN)?;
    let to_login = m.time_until("login: ", 5 * MIN)?;
    println!("TIMING boot under UEFI Secure Boot from the ISO as a disk: login prompt {:.1} s", to_login.as_secs_f64());
    let early = m.console.text_since(0);
    let kernel_at = early.find("Linux version").unwrap_or(early.len());
    let grub_part = &early[..kernel_at];
    assert!(
        !grub_part.contains("error:") && !grub_part.contains("can't find command"),
        "GRUB reported errors with the menu:\n{grub_part}"
    );
    m.login("op", "opsecret", 5 * MIN)?;

    // The kernel saw Secure Boot on and locked itself down.
    let dmesg = m.sudo("dmesg", MIN)?;
    assert!(dmesg.contains("Secure boot enabled"), "the kernel does not report Secure Boot:\n{dmesg}");
    let lockdown = m.sudo(
        "mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security; cat /sys/kernel/security/lockdown",
        MIN,
    )?;
    assert!(lockdown.contains("[integrity]") || lockdown.contains("[confidentiality]"), "lockdown is off: {lockdown}");

    // Modules from the image load (they kept Debian's signature when the build
    // decompressed them); the same module without its signature is refused.
    let signer = m.succeed("/usr/sbin/modinfo -F sig_id dummy", MIN)?;
    assert!(signer.contains("PKCS#7"), "dummy.ko has no signature: {signer}");
    m.succeed(STRIP_SIGNATURE, MIN)?;
    let refused = sudo_execute(&mut m, "insmod /tmp/dummy-unsigned.ko")?;
    assert_ne!(refused.code, 0, "an unsigned module loaded under Secure Boot: {}", refused.text);
    // Refused by the signature policy: EKEYREJECTED where Secure Boot turned signature
    // enforcement on ("Loading of unsigned module is rejected"), EPERM where only lockdown
    // refuses it; a malformed module would get ENOEXEC instead.
    assert!(
        refused.text.contains("Key was rejected by service") || refused.text.contains("Operation not permitted"),
        "refused for another reason: {}",
        refused.text
    );
    let said = m.sudo("dmesg | grep -i -e 'lockdown:' -e 'unsigned module' || true", MIN)?;
    println!("KERNEL on the unsigned module: {}", said.trim());
    m.sudo("modprobe dummy && grep -q '^dummy ' /proc/modules", MIN)?;

    // Persistence claimed and mounted.
    let st = m.status()?;
    assert_eq!(
        (&st["persistence"]["mode"], &st["persistence"]["device"]),
        (&"device".into(), &"sda1".into()),
        "{st:#}"
    );
    // `lightwhale status` reads the firmware's SecureBoot variable (efivarfs, read-only)
    // and the lockdown mode, for every user.
    assert_eq!(st["secure_boot"]["enabled"], true, "{st:#}");
    assert_eq!(st["secure_boot"]["lockdown"], "integrity", "{st:#}");
    assert_eq!(m.succeed("findmnt -n -o FSTYPE /mnt/lightwhale-data", MIN)?.trim(), "ext4");

    // Docker runs a container (its netfilter and overlay modules load on demand).
    m.wait_until_succeeds("d info", 5 * MIN)?;
    m.succeed("mkdir -p /tmp/img && cp /usr/bin/busybox /tmp/img/ && tar -C /tmp/img -c busybox | d import -c 'ENTRYPOINT [\"/busybox\"]' - lw/busybox", 3 * MIN)?;
    let out = m.succeed("d run --rm lw/busybox echo hello-from-secure-boot", 3 * MIN)?;
    assert!(out.contains("hello-from-secure-boot"), "{out}");
    Ok(())
}

/// Proof that the firmware enforces Secure Boot: the same ISO, but with the unsigned GRUB
/// built by grub-mkimage (the Nix path's loader) in the ESP, is refused before any GRUB
/// or kernel code runs.
#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn secure_boot_refuses_an_unsigned_loader() -> Result<(), VmError> {
    let a = artifacts()?;
    // Not the machine's own directory, which the harness empties when the machine starts.
    let dir = work_dir().join("secure-boot-unsigned-iso");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Host(e.to_string()))?;
    let iso = dir.join("unsigned-loader.iso");
    let boot = lightwhale_image::iso::BootFiles::debian();
    assert!(matches!(boot.efi, lightwhale_image::iso::EfiLoader::Unsigned { .. }));
    lightwhale_image::iso::build(&lightwhale_image::iso::Inputs {
        kernel: &a.kernel,
        initramfs: &a.initramfs,
        rootfs_img: &a.rootfs_img,
        boot: &boot,
        version: "test",
        build_id: "unsigned-loader",
        epoch: 0,
        work_dir: &dir,
        out: &iso,
    })
    .map_err(|e| VmError::Host(format!("building the ISO with the unsigned loader: {e}")))?;

    let mut c = Config::new(Boot::IsoAsDisk(iso, Iface::Virtio));
    c.secure_boot = true;
    c.forwards.clear();
    let mut m = Machine::start("secure-boot-unsigned", c)?;
    // OVMF's boot manager names the boot option it could not start and why.
    let line = m.wait_for_console_line("Access Denied", 5 * MIN)?;
    println!("firmware: {line}");
    let seen = m.console.text_since(0);
    for ran in ["GNU GRUB", "Lightwhale (RAM only", "Linux version"] {
        assert!(!seen.contains(ran), "{ran:?} on the console: the unsigned loader ran:\n{seen}");
    }
    Ok(())
}

/// The ISO as a CD-ROM under Secure Boot: the firmware loads shim from the El Torito EFI
/// image, and GRUB reads its menu straight from the ISO 9660 file system.
#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn secure_boot_from_cd_reaches_login() -> Result<(), VmError> {
    let a = artifacts()?;
    let mut c = Config::new(Boot::Cdrom(a.iso.clone()));
    c.secure_boot = true;
    c.forwards.clear();
    let mut m = Machine::start("secure-boot-cd", c)?;
    let to_login = m.time_until("login: ", 10 * MIN)?;
    println!(
        "TIMING boot under UEFI Secure Boot from the ISO as a CD-ROM: login prompt {:.1} s",
        to_login.as_secs_f64()
    );
    m.login("op", "opsecret", MIN)?;
    assert!(m.sudo("dmesg", MIN)?.contains("Secure boot enabled"));
    Ok(())
}
