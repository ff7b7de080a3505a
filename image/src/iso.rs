//! The hybrid ISO: ISOLINUX for BIOS (CD and disk, via the isohybrid MBR), GRUB for UEFI
//! (an EFI system partition image referenced from both El Torito and the GPT), and the
//! kernel with its two initrds.

use crate::error::{Error, IoContext, Result};
use crate::progress::Step;
use crate::tree::set_mtime;
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("iso.rs");

const STEP: &str = "iso";
pub const VOLUME_ID: &str = lightwhale_init::persist::header::IMAGE_VOLUME_ID;
pub const CMDLINE: &str = lightwhale_init::cmdline::KERNEL_CMDLINE;

/// The boot loader files, from the host (Debian's packages) or from nixpkgs.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub isolinux_bin: PathBuf,
    pub ldlinux_c32: PathBuf,
    /// The isohybrid MBR that makes the ISO boot as a disk under BIOS.
    pub isohdpfx_bin: PathBuf,
    /// GRUB's x86_64-efi module directory; None: grub-mkimage's own default.
    pub grub_efi_dir: Option<PathBuf>,
}

impl BootFiles {
    /// Where Debian's isolinux, syslinux-common and grub-efi-amd64-bin put them.
    pub fn debian() -> BootFiles {
        BootFiles {
            isolinux_bin: "/usr/lib/ISOLINUX/isolinux.bin".into(),
            ldlinux_c32: "/usr/lib/syslinux/modules/bios/ldlinux.c32".into(),
            isohdpfx_bin: "/usr/lib/ISOLINUX/isohdpfx.bin".into(),
            grub_efi_dir: None,
        }
    }
}

pub struct Inputs<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub rootfs_img: &'a Path,
    pub boot: &'a BootFiles,
    /// Written to /boot/lightwhale.id, the file GRUB searches for.
    pub version: &'a str,
    pub build_id: &'a str,
    pub epoch: u64,
    /// Scratch space (the ISO's file tree, the ESP image).
    pub work_dir: &'a Path,
    pub out: &'a Path,
}

fn isolinux_cfg() -> String {
    format!(
        "SERIAL 0 115200\nPROMPT 1\nTIMEOUT 10\nDEFAULT lightwhale\n\
         SAY Lightwhale: booting in 1 s. Type \"ram\" for a boot that ignores persistence disks.\n\
         LABEL lightwhale\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initramfs.img,/boot/rootfs.img\n  APPEND {CMDLINE}\n\
         LABEL ram\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initramfs.img,/boot/rootfs.img\n  APPEND {CMDLINE} lightwhale.persistence=tmpfs\n"
    )
}

fn grub_cfg() -> String {
    let entry = |title: &str, extra: &str| {
        format!("menuentry \"{title}\" {{\n  linux /boot/vmlinuz {CMDLINE}{extra}\n  initrd /boot/initramfs.img /boot/rootfs.img\n}}\n")
    };
    format!(
        "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n\
         set timeout=1\nset default=0\n{}{}",
        entry("Lightwhale", ""),
        entry("Lightwhale (RAM only: ignore persistence disks)", " lightwhale.persistence=tmpfs")
    )
}

const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "iso9660",
    "fat",
    "search",
    "search_fs_file",
    "configfile",
    "linux",
    "normal",
    "serial",
    "terminal",
    "echo",
    "test",
    "efi_gop",
];

/// GRUB's built-in config: find the ISO by a file only it has, then use its grub.cfg.
const GRUB_EMBEDDED: &str = "search --no-floppy --set=root --file /boot/lightwhale.id\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n";

pub fn build(inputs: &Inputs) -> Result<PathBuf> {
    let step = Step::start("iso: boot loaders and xorriso");
    let root = inputs.work_dir.join("iso-root");
    if root.exists() {
        std::fs::remove_dir_all(&root).ctx(STEP, &root)?;
    }
    for d in ["boot/grub", "isolinux", "EFI/BOOT"] {
        std::fs::create_dir_all(root.join(d)).ctx(STEP, root.join(d))?;
    }
    let link_or_copy = |src: &Path, dst: PathBuf| -> Result<()> {
        std::fs::hard_link(src, &dst).or_else(|_| std::fs::copy(src, &dst).map(|_| ())).ctx(STEP, &dst)
    };
    link_or_copy(inputs.kernel, root.join("boot/vmlinuz"))?;
    link_or_copy(inputs.initramfs, root.join("boot/initramfs.img"))?;
    link_or_copy(inputs.rootfs_img, root.join("boot/rootfs.img"))?;
    std::fs::write(root.join("boot/lightwhale.id"), format!("{} {}\n", inputs.version, inputs.build_id))
        .ctx(STEP, &root)?;
    std::fs::write(root.join("isolinux/isolinux.cfg"), isolinux_cfg()).ctx(STEP, &root)?;
    std::fs::write(root.join("boot/grub/grub.cfg"), grub_cfg()).ctx(STEP, &root)?;
    for (src, dst) in
        [(&inputs.boot.isolinux_bin, "isolinux/isolinux.bin"), (&inputs.boot.ldlinux_c32, "isolinux/ldlinux.c32")]
    {
        std::fs::copy(src, root.join(dst)).map_err(|source| Error::Io { step: STEP, path: src.clone(), source })?;
    }

    let efi = inputs.work_dir.join("BOOTX64.EFI");
    let embedded = inputs.work_dir.join("grub-embedded.cfg");
    std::fs::write(&embedded, GRUB_EMBEDDED).ctx(STEP, &embedded)?;
    // grub-mkimage with the modules built in and the config embedded: unlike
    // grub-mkstandalone it packs no memdisk tar with build-time timestamps, so the EFI
    // loader is bit-identical from build to build.
    let mut mkimage = Command::new("grub-mkimage");
    if let Some(dir) = &inputs.boot.grub_efi_dir {
        mkimage.arg("-d").arg(dir);
    }
    crate::cmd::output(
        STEP,
        mkimage
            .args(["-O", "x86_64-efi", "-p", "/boot/grub", "-c"])
            .arg(&embedded)
            .arg("-o")
            .arg(&efi)
            .args(GRUB_MODULES),
    )?;
    std::fs::copy(&efi, root.join("EFI/BOOT/BOOTX64.EFI")).ctx(STEP, &efi)?;
    let esp = root.join("boot/grub/efiboot.img");
    make_esp(inputs.epoch, &efi, &esp)?;

    // Same timestamps on every file, so two builds give the same ISO.
    for p in crate::tree::walk(&root).ctx(STEP, &root)?.iter().chain([&root]) {
        set_mtime(p, inputs.epoch)?;
    }

    let iso = inputs.out.to_path_buf();
    let tmp = iso.with_extension("iso.tmp");
    let mut cmd = Command::new("xorriso");
    cmd.env("SOURCE_DATE_EPOCH", inputs.epoch.to_string())
        .args(["-as", "mkisofs", "-quiet", "-iso-level", "3", "-full-iso9660-filenames", "-rational-rock", "-joliet"])
        .args(["-volid", VOLUME_ID, "-appid", "Lightwhale"])
        // Rock Ridge records ctime too, which no tool can set: use each file's mtime.
        .args(["--set_all_file_dates", "set_to_mtime"])
        .arg("-isohybrid-mbr")
        .arg(&inputs.boot.isohdpfx_bin)
        .args(["-eltorito-boot", "isolinux/isolinux.bin", "-eltorito-catalog", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-eltorito-alt-boot", "-e", "boot/grub/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat"])
        .arg("-output")
        .arg(&tmp)
        .arg(&root);
    crate::cmd::output(STEP, &mut cmd)?;
    std::fs::rename(&tmp, &iso).ctx(STEP, &iso)?;
    let size = std::fs::metadata(&iso).ctx(STEP, &iso)?.len();
    step.done(&format!("{} ({:.1} MB)", iso.display(), size as f64 / 1e6));
    Ok(iso)
}

/// A FAT image holding EFI/BOOT/BOOTX64.EFI, with fixed volume id and timestamps.
fn make_esp(epoch: u64, efi: &Path, esp: &Path) -> Result<()> {
    let efi_kib = std::fs::metadata(efi).ctx(STEP, efi)?.len().div_ceil(1024);
    let kib = (efi_kib + 512).div_ceil(1024) * 1024;
    let _ = std::fs::remove_file(esp);
    crate::cmd::output(
        STEP,
        Command::new("mkfs.vfat")
            .args(["-C", "--invariant", "-i", "4c57484c", "-n", "LW-EFI"])
            .arg(esp)
            .arg(kib.to_string()),
    )?;
    let mtools = |args: &[&str]| {
        crate::cmd::output(
            STEP,
            Command::new(args[0])
                .args(&args[1..])
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .env("MTOOLS_SKIP_CHECK", "1"),
        )
    };
    // mcopy -m keeps the file's mtime: make it the build date.
    set_mtime(efi, epoch)?;
    let img = esp.to_string_lossy();
    mtools(&["mmd", "-i", &img, "::/EFI", "::/EFI/BOOT"])?;
    mtools(&["mcopy", "-m", "-i", &img, &efi.to_string_lossy(), "::/EFI/BOOT/BOOTX64.EFI"])?;
    Ok(())
}
