//! The hybrid ISO: ISOLINUX for BIOS (CD and disk, via the isohybrid MBR), GRUB for UEFI
//! (an EFI system partition image referenced from both El Torito and the GPT), and the
//! kernel with its two initrds.
//!
//! Two UEFI loaders fit the same layout. The Debian path ships Debian's signed chain, so
//! the ISO boots with Secure Boot on: shim (signed by Microsoft's UEFI CA) as BOOTX64.EFI,
//! Debian's signed removable-media GRUB beside it as grubx64.efi, and MokManager. That
//! GRUB carries its own built-in config and cannot load modules under Secure Boot, so the
//! ESP gives it the file it reads first, `/boot/grub/grub.cfg` on the device it was loaded
//! from. The Nix path has no signed GRUB and builds one with grub-mkimage, with the same
//! config embedded: it boots with Secure Boot off only.

use crate::error::{Error, IoContext, Result};
use crate::progress::Step;
use crate::tree::set_mtime;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("iso.rs");

const STEP: &str = "iso";
pub const VOLUME_ID: &str = lightwhale_types::constants::IMAGE_VOLUME_ID;
pub const CMDLINE: &str = lightwhale_types::cmdline::KERNEL_CMDLINE;

/// The boot loader files, from the host (Debian's packages) or from nixpkgs.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub isolinux_bin: PathBuf,
    pub ldlinux_c32: PathBuf,
    /// The isohybrid MBR that makes the ISO boot as a disk under BIOS.
    pub isohdpfx_bin: PathBuf,
    pub efi: EfiLoader,
}

/// What boots the ISO under UEFI.
#[derive(Debug, Clone)]
pub enum EfiLoader {
    /// Debian's signed chain: boots with Secure Boot on or off.
    Signed(SignedLoader),
    /// GRUB built here by grub-mkimage from its x86_64-efi module directory (None:
    /// grub-mkimage's own default). Signed by no one: boots with Secure Boot off only.
    Unsigned { grub_efi_dir: Option<PathBuf> },
}

/// The files of Debian's Secure Boot chain (packages shim-signed, shim-helpers-amd64-signed
/// and grub-efi-amd64-signed).
#[derive(Debug, Clone)]
pub struct SignedLoader {
    /// `shimx64.efi.signed`: the first stage the firmware verifies with Microsoft's key.
    pub shim: PathBuf,
    /// `gcdx64.efi.signed`: GRUB for removable media, verified by shim with Debian's key.
    pub grub: PathBuf,
    /// `mmx64.efi.signed`: MokManager, which shim starts when a user enrols a key.
    pub mok_manager: PathBuf,
}

/// Where the ESP holds each file, and its name in the signed chain. shim loads the second
/// stage by this fixed name from its own directory; with no fallback loader (fbx64.efi)
/// beside it, shim never writes boot entries to the machine's NVRAM.
pub const ESP_BOOT_DIR: &str = "EFI/BOOT";
pub const ESP_SHIM: &str = "BOOTX64.EFI";
pub const ESP_GRUB: &str = "grubx64.efi";
pub const ESP_MOK_MANAGER: &str = "mmx64.efi";

impl BootFiles {
    /// Where Debian's isolinux, syslinux-common and grub-efi-amd64-bin put them, with the
    /// unsigned loader (the Debian-path build passes the signed one).
    pub fn debian() -> BootFiles {
        BootFiles {
            isolinux_bin: "/usr/lib/ISOLINUX/isolinux.bin".into(),
            ldlinux_c32: "/usr/lib/syslinux/modules/bios/ldlinux.c32".into(),
            isohdpfx_bin: "/usr/lib/ISOLINUX/isohdpfx.bin".into(),
            efi: EfiLoader::Unsigned { grub_efi_dir: None },
        }
    }
}

pub struct Inputs<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub rootfs_img: &'a Path,
    pub boot: &'a BootFiles,
    /// Written into the marker file GRUB searches for.
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

/// The menu, `/boot/grub/grub.cfg` on the ISO. Only commands that Debian's signed GRUB
/// has built in (it cannot load modules under Secure Boot): serial, terminal_*, set,
/// menuentry, linux, initrd.
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

/// Pure: a name for this image, from the digests of what it boots. Two different
/// Lightwhale images (or any other stick) never share it.
pub fn image_id(digests: &[&str]) -> String {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    crate::hex(&h.finalize())[..16].to_string()
}

/// Pure: the marker file, on the ISO 9660 file system only, that GRUB searches for.
pub fn marker_path(image_id: &str) -> String {
    format!("/boot/lightwhale-{image_id}.id")
}

/// Pure: what GRUB runs first, from the ESP (in the signed GRUB's search order, before its
/// fallbacks that look for any Debian medium's `/.disk/info`) or embedded in the unsigned
/// one: find the ISO file system that belongs to this very image, then show its menu.
pub fn find_image_cfg(marker: &str) -> String {
    format!(
        "search --no-floppy --set=root --file {marker}\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"
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

/// The unsigned loader: grub-mkimage with the modules built in and `config` embedded.
/// Unlike grub-mkstandalone it packs no memdisk tar with build-time timestamps, so the
/// EFI loader is bit-identical from build to build.
pub fn unsigned_grub(grub_efi_dir: Option<&Path>, config: &str, work_dir: &Path) -> Result<PathBuf> {
    let efi = work_dir.join("grub-unsigned.efi");
    let embedded = work_dir.join("grub-embedded.cfg");
    std::fs::write(&embedded, config).ctx(STEP, &embedded)?;
    let mut mkimage = Command::new("grub-mkimage");
    if let Some(dir) = grub_efi_dir {
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
    Ok(efi)
}

/// The ESP's files: (source, path in the ESP).
fn esp_files(loader: &EfiLoader, marker: &str, work_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let at = |name: &str| format!("{ESP_BOOT_DIR}/{name}");
    match loader {
        EfiLoader::Signed(s) => {
            // The signed GRUB's built-in config reads `$prefix/grub.cfg`, prefix being
            // /boot/grub on the device it was loaded from: the ESP when booted as a disk.
            // (From a CD, GRUB sees the whole ISO as that device and reads the menu itself.)
            let cfg = work_dir.join("esp-grub.cfg");
            std::fs::write(&cfg, find_image_cfg(marker)).ctx(STEP, &cfg)?;
            Ok(vec![
                (s.shim.clone(), at(ESP_SHIM)),
                (s.grub.clone(), at(ESP_GRUB)),
                (s.mok_manager.clone(), at(ESP_MOK_MANAGER)),
                (cfg, "boot/grub/grub.cfg".into()),
            ])
        }
        EfiLoader::Unsigned { grub_efi_dir } => {
            let efi = unsigned_grub(grub_efi_dir.as_deref(), &find_image_cfg(marker), work_dir)?;
            Ok(vec![(efi, at(ESP_SHIM))])
        }
    }
}

pub fn build(inputs: &Inputs) -> Result<PathBuf> {
    let step = Step::start("iso: boot loaders and xorriso");
    let root = inputs.work_dir.join("iso-root");
    if root.exists() {
        std::fs::remove_dir_all(&root).ctx(STEP, &root)?;
    }
    for d in ["boot/grub", "isolinux"] {
        std::fs::create_dir_all(root.join(d)).ctx(STEP, root.join(d))?;
    }
    let link_or_copy = |src: &Path, dst: PathBuf| -> Result<()> {
        std::fs::hard_link(src, &dst).or_else(|_| std::fs::copy(src, &dst).map(|_| ())).ctx(STEP, &dst)
    };
    let mut digests = Vec::new();
    for (src, dst) in [
        (inputs.kernel, "boot/vmlinuz"),
        (inputs.initramfs, "boot/initramfs.img"),
        (inputs.rootfs_img, "boot/rootfs.img"),
    ] {
        link_or_copy(src, root.join(dst))?;
        digests.push(crate::sha256_file(src).ctx(STEP, src)?);
    }
    let marker = marker_path(&image_id(&digests.iter().map(String::as_str).collect::<Vec<_>>()));
    let marker_file = root.join(marker.trim_start_matches('/'));
    std::fs::write(&marker_file, format!("{} {}\n", inputs.version, inputs.build_id)).ctx(STEP, &marker_file)?;
    std::fs::write(root.join("isolinux/isolinux.cfg"), isolinux_cfg()).ctx(STEP, &root)?;
    std::fs::write(root.join("boot/grub/grub.cfg"), grub_cfg()).ctx(STEP, &root)?;
    for (src, dst) in
        [(&inputs.boot.isolinux_bin, "isolinux/isolinux.bin"), (&inputs.boot.ldlinux_c32, "isolinux/ldlinux.c32")]
    {
        std::fs::copy(src, root.join(dst)).map_err(|source| Error::Io { step: STEP, path: src.clone(), source })?;
    }

    // The EFI loaders live only in the ESP image: UEFI firmware finds them there through
    // El Torito on a CD and through the GPT/MBR partition on a disk; a second copy in the
    // ISO 9660 tree cost 4.2 MB and no UEFI firmware reads ISO 9660 itself.
    let files = esp_files(&inputs.boot.efi, &marker, inputs.work_dir)?;
    let esp = root.join("boot/grub/efiboot.img");
    make_esp(inputs.epoch, &files, &esp, inputs.work_dir)?;

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

/// Pure: the FAT image's size in KiB for files of `file_bytes` in total: room for the FAT
/// and directories, rounded up to whole MiB.
fn esp_kib(file_bytes: u64) -> u64 {
    (file_bytes.div_ceil(1024) + 512).div_ceil(1024) * 1024
}

/// A FAT image holding `files` (source, path inside), with fixed volume id and timestamps.
fn make_esp(epoch: u64, files: &[(PathBuf, String)], esp: &Path, work_dir: &Path) -> Result<()> {
    let mut bytes = 0;
    for (src, _) in files {
        bytes += std::fs::metadata(src).ctx(STEP, src)?.len();
    }
    let _ = std::fs::remove_file(esp);
    crate::cmd::output(
        STEP,
        Command::new("mkfs.vfat")
            .args(["-C", "--invariant", "-i", "4c57484c", "-n", "LW-EFI"])
            .arg(esp)
            .arg(esp_kib(bytes).to_string()),
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
    let img = esp.to_string_lossy();
    let mut dirs: Vec<String> = Vec::new();
    for (_, dst) in files {
        let mut d = String::new();
        for part in Path::new(dst).parent().into_iter().flat_map(|p| p.iter()) {
            d = format!("{d}/{}", part.to_string_lossy());
            if !dirs.contains(&d) {
                mtools(&["mmd", "-i", &img, &format!("::{d}")])?;
                dirs.push(d.clone());
            }
        }
    }
    for (src, dst) in files {
        // mcopy -m keeps the file's mtime: make it the build date. The source may be a
        // read-only store path (Nix), so a copy gets the date.
        let staged = work_dir.join("esp-file");
        std::fs::copy(src, &staged).ctx(STEP, src)?;
        set_mtime(&staged, epoch)?;
        let copied = mtools(&["mcopy", "-m", "-i", &img, &staged.to_string_lossy(), &format!("::/{dst}")]);
        let _ = std::fs::remove_file(&staged);
        copied?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_id_depends_on_every_digest() {
        let a = image_id(&["k", "i", "r"]);
        assert_eq!(a.len(), 16);
        assert_eq!(a, image_id(&["k", "i", "r"]));
        assert_ne!(a, image_id(&["k", "i", "r2"]));
        assert_ne!(a, image_id(&["ki", "", "r"]));
    }

    #[test]
    fn grub_finds_this_image_by_its_own_marker() {
        let marker = marker_path("0123456789abcdef");
        assert_eq!(marker, "/boot/lightwhale-0123456789abcdef.id");
        let cfg = find_image_cfg(&marker);
        assert!(
            cfg.starts_with("search --no-floppy --set=root --file /boot/lightwhale-0123456789abcdef.id\n"),
            "{cfg}"
        );
        // Never the generic markers Debian's signed GRUB falls back to.
        assert!(!cfg.contains(".disk"), "{cfg}");
        assert!(cfg.ends_with("configfile $prefix/grub.cfg\n"), "{cfg}");
    }

    #[test]
    fn menu_uses_only_commands_built_into_the_signed_grub() {
        // gcdx64.efi.signed registers these; `insmod` is refused under Secure Boot.
        let builtin = ["serial", "terminal_input", "terminal_output", "set", "menuentry", "linux", "initrd", "}"];
        let cfg = grub_cfg();
        for line in cfg.lines() {
            let cmd = line.split_whitespace().next().unwrap_or("");
            assert!(builtin.contains(&cmd), "`{cmd}` in the menu: {cfg}");
        }
        assert!(cfg.contains("lightwhale.persistence=tmpfs") && cfg.contains("--speed=115200"), "{cfg}");
    }

    #[test]
    fn esp_has_room_for_its_files() {
        assert_eq!(esp_kib(640 * 1024), 2048);
        assert_eq!(esp_kib(4_238_888), 5120);
        assert!(esp_kib(4_238_888) * 1024 > 4_238_888 + 512 * 1024);
    }
}
