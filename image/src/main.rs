//! `lightwhale-mkimage`: the image assembler as a command, for the flake's derivations (the
//! Debian path calls the same library from `cargo xtask iso`).

use clap::{Args, Parser, Subcommand};
use lightwhale_image::manifest::{self, Module};
use lightwhale_image::{firmware, initramfs, iso, kmods, nixroot, squashfs, users, Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(version, about = "Assemble Lightwhale's image: root-tree steps, squashfs, initramfs, hybrid ISO")]
struct Cli {
    /// Every timestamp in the artefacts (seconds since 1970).
    #[arg(long, global = true, env = "SOURCE_DATE_EPOCH", default_value_t = 1)]
    epoch: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add the modules' groups, system users and users to a root tree (/etc/passwd, group,
    /// shadow, gshadow, subuid, subgid, home directories).
    Users(UsersArgs),
    /// Drop the kernel modules the modules' [prune] lists name, decompress the rest, depmod.
    KernelModules(KernelModulesArgs),
    /// Keep only the firmware the tree's (pruned) kernel modules ask for in its
    /// usr/lib/firmware, per the modules' [firmware] rules.
    Firmware(KernelModulesArgs),
    /// Squash a root tree into rootfs.squashfs and wrap it with its hashes as rootfs.img.
    Squashfs(SquashfsArgs),
    /// Write the early initramfs: the init and the stage 1 kernel modules.
    Initramfs(InitramfsArgs),
    /// Write the hybrid ISO (BIOS and UEFI, CD and disk).
    Iso(IsoArgs),
    /// Assemble the Nix path's root tree from a closure of nixpkgs packages.
    NixRoot(NixRootArgs),
}

#[derive(Args)]
struct NixRootArgs {
    /// closureInfo's store-paths file.
    #[arg(long, value_name = "FILE")]
    store_paths: PathBuf,
    /// The buildEnv of the modules' packages.
    #[arg(long, value_name = "DIR")]
    env: PathBuf,
    /// JSON object: image path -> store path (the modules' [nix] links, resolved).
    #[arg(long, value_name = "FILE")]
    links: PathBuf,
    /// The kernel's lib/modules directory.
    #[arg(long, value_name = "DIR")]
    kernel_modules: PathBuf,
    #[arg(long)]
    release: String,
    /// linux-pam's output.
    #[arg(long, value_name = "DIR")]
    pam: PathBuf,
    /// A lib/firmware directory the kept drivers' firmware is copied from (repeatable;
    /// the first one that has a file wins).
    #[arg(long, value_name = "DIR")]
    firmware: Vec<PathBuf>,
    /// IMAGE_PATH=STORE_FILE: copied out of the store and made setuid root (repeatable).
    #[arg(long, value_name = "IMAGE_PATH=STORE_FILE", value_parser = parse_setuid)]
    setuid: Vec<(String, PathBuf)>,
    #[command(flatten)]
    modules: ModulesArg,
    #[arg(long)]
    version: String,
    #[arg(long)]
    build_id: String,
    /// The nixpkgs revision the packages come from.
    #[arg(long)]
    nixpkgs: String,
    /// Where the tree is made (emptied first).
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// Where the pseudo definitions for `squashfs --pseudo-file` go.
    #[arg(long, value_name = "FILE")]
    pseudo_out: PathBuf,
}

fn parse_setuid(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (path, file) = s.split_once('=').ok_or("expected IMAGE_PATH=STORE_FILE")?;
    Ok((path.to_string(), PathBuf::from(file)))
}

#[derive(Args)]
struct ModulesArg {
    /// The repository's modules/ directory.
    #[arg(long, value_name = "DIR")]
    modules: PathBuf,
}

impl ModulesArg {
    fn load(&self) -> Result<Vec<Module>> {
        manifest::load(&self.modules)
    }
}

#[derive(Args)]
struct UsersArgs {
    /// The root tree.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    #[command(flatten)]
    modules: ModulesArg,
    /// Append mksquashfs pseudo definitions for the owners and modes of what was written.
    #[arg(long, value_name = "FILE")]
    pseudo_out: Option<PathBuf>,
}

#[derive(Args)]
struct KernelModulesArgs {
    /// The root tree; its usr/lib/modules/<release> is pruned in place.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    #[arg(long)]
    release: String,
    #[command(flatten)]
    modules: ModulesArg,
}

#[derive(Args)]
struct SquashfsArgs {
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// Where rootfs.squashfs and rootfs.img go.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// mksquashfs pseudo definitions (owners, modes, setuid bits).
    #[arg(long, value_name = "FILE")]
    pseudo_file: Option<PathBuf>,
    /// Make every file root's (for trees built without root).
    #[arg(long)]
    all_root: bool,
}

#[derive(Args)]
struct InitramfsArgs {
    /// Becomes /init.
    #[arg(long, value_name = "FILE")]
    init: PathBuf,
    /// The kernel's module tree for `release` (holding modules.dep and modules.builtin).
    #[arg(long, value_name = "DIR")]
    module_tree: PathBuf,
    #[arg(long)]
    release: String,
    #[command(flatten)]
    modules: ModulesArg,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
struct IsoArgs {
    #[arg(long, value_name = "FILE")]
    kernel: PathBuf,
    #[arg(long, value_name = "FILE")]
    initramfs: PathBuf,
    #[arg(long, value_name = "FILE")]
    rootfs_img: PathBuf,
    #[arg(long)]
    version: String,
    #[arg(long)]
    build_id: String,
    /// ISOLINUX's isolinux.bin (default: Debian's).
    #[arg(long, value_name = "FILE")]
    isolinux_bin: Option<PathBuf>,
    /// SYSLINUX's BIOS ldlinux.c32 (default: Debian's).
    #[arg(long, value_name = "FILE")]
    ldlinux_c32: Option<PathBuf>,
    /// The isohybrid MBR (default: Debian's).
    #[arg(long, value_name = "FILE")]
    isohdpfx_bin: Option<PathBuf>,
    /// GRUB's x86_64-efi module directory for the unsigned UEFI loader built with
    /// grub-mkimage (default: grub-mkimage's own).
    #[arg(long, value_name = "DIR", conflicts_with = "shim")]
    grub_efi_dir: Option<PathBuf>,
    /// Debian's signed shim (shimx64.efi.signed): with --signed-grub and --mok-manager, the
    /// UEFI loader is Debian's Secure Boot chain instead of an unsigned GRUB.
    #[arg(long, value_name = "FILE", requires_all = ["signed_grub", "mok_manager"])]
    shim: Option<PathBuf>,
    /// Debian's signed removable-media GRUB (gcdx64.efi.signed).
    #[arg(long, value_name = "FILE", requires = "shim")]
    signed_grub: Option<PathBuf>,
    /// Debian's signed MokManager (mmx64.efi.signed).
    #[arg(long, value_name = "FILE", requires = "shim")]
    mok_manager: Option<PathBuf>,
    /// Scratch space.
    #[arg(long, value_name = "DIR")]
    work_dir: PathBuf,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn read_links(path: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { step: "nix root", path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::Step {
        step: "nix root",
        message: format!("{}: not a JSON object of paths: {e}", path.display()),
    })
}

fn write_pseudo(path: &Path, lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|source| Error::Io {
        step: "users",
        path: path.into(),
        source,
    })?;
    lines.iter().try_for_each(|l| writeln!(f, "{l}")).map_err(|source| Error::Io {
        step: "users",
        path: path.into(),
        source,
    })
}

fn run(cli: Cli) -> Result<()> {
    let epoch = cli.epoch;
    match cli.command {
        Cmd::Users(a) => {
            let mods = a.modules.load()?;
            let applied = users::apply(
                &a.root,
                &manifest::all(&mods, |m| &m.groups),
                &manifest::all(&mods, |m| &m.system_users),
                &manifest::all(&mods, |m| &m.users),
                epoch,
            )?;
            if let Some(p) = &a.pseudo_out {
                write_pseudo(p, &applied.pseudo)?;
            }
            println!("users: added {}", applied.users_added.join(" "));
            Ok(())
        }
        Cmd::KernelModules(a) => {
            let mods = a.modules.load()?;
            let moddir = a.root.join("usr/lib/modules").join(&a.release);
            let k = kmods::prune(
                &moddir,
                &manifest::all(&mods, |m| &m.prune.drop_kernel_modules),
                &manifest::all(&mods, |m| &m.prune.require_kernel_modules),
            )?;
            kmods::depmod(&a.root, &a.release)?;
            println!("kernel modules: {} kept, {} dropped", k.kept, k.dropped);
            Ok(())
        }
        Cmd::Firmware(a) => {
            let mods = a.modules.load()?;
            let f = firmware::prune_in_place(&a.root, &a.release, &firmware::Rules::from_modules(&mods)?)?;
            println!(
                "firmware: {} files ({:.1} MB, {:.1} MB stored) kept, {} skipped, {} asked for but not packaged",
                f.files,
                f.bytes as f64 / 1e6,
                f.stored_bytes as f64 / 1e6,
                f.skipped,
                f.missing
            );
            Ok(())
        }
        Cmd::Squashfs(a) => {
            std::fs::create_dir_all(&a.out_dir).map_err(|source| Error::Io {
                step: "squashfs",
                path: a.out_dir.clone(),
                source,
            })?;
            let sq = squashfs::build(&squashfs::Squashfs {
                tree: &a.tree,
                out: &a.out_dir.join("rootfs.squashfs"),
                epoch,
                pseudo_file: a.pseudo_file.as_deref(),
                all_root: a.all_root,
                log: &a.out_dir.join("mksquashfs.log"),
            })?;
            squashfs::rootfs_img(&sq, &a.out_dir.join("rootfs.img"), epoch).map(|_| ())
        }
        Cmd::Initramfs(a) => {
            let mods = a.modules.load()?;
            let kernel_modules = manifest::all(&mods, |m| &m.initramfs.kernel_modules);
            initramfs::build(&initramfs::Initramfs {
                init: &a.init,
                module_tree: &a.module_tree,
                release: &a.release,
                kernel_modules: &kernel_modules,
                epoch,
                out: &a.out,
            })
            .map(|_| ())
        }
        Cmd::Iso(a) => {
            let d = iso::BootFiles::debian();
            let efi = match (a.shim, a.signed_grub, a.mok_manager) {
                (Some(shim), Some(grub), Some(mok_manager)) => {
                    iso::EfiLoader::Signed(iso::SignedLoader { shim, grub, mok_manager })
                }
                _ => iso::EfiLoader::Unsigned { grub_efi_dir: a.grub_efi_dir },
            };
            let boot = iso::BootFiles {
                isolinux_bin: a.isolinux_bin.unwrap_or(d.isolinux_bin),
                ldlinux_c32: a.ldlinux_c32.unwrap_or(d.ldlinux_c32),
                isohdpfx_bin: a.isohdpfx_bin.unwrap_or(d.isohdpfx_bin),
                efi,
            };
            iso::build(&iso::Inputs {
                kernel: &a.kernel,
                initramfs: &a.initramfs,
                rootfs_img: &a.rootfs_img,
                boot: &boot,
                version: &a.version,
                build_id: &a.build_id,
                epoch,
                work_dir: &a.work_dir,
                out: &a.out,
            })
            .map(|_| ())
        }
        Cmd::NixRoot(a) => {
            let mods = a.modules.load()?;
            let pseudo = nixroot::build(&nixroot::NixRoot {
                store_paths: &a.store_paths,
                env: &a.env,
                links: &read_links(&a.links)?,
                kernel_modules: &a.kernel_modules,
                release: &a.release,
                pam: &a.pam,
                firmware: &a.firmware,
                setuid: &a.setuid.into_iter().collect(),
                modules: &mods,
                version: &a.version,
                build_id: &a.build_id,
                nixpkgs: &a.nixpkgs,
                epoch,
                tree: &a.tree,
            })?;
            let _ = std::fs::remove_file(&a.pseudo_out);
            write_pseudo(&a.pseudo_out, &pseudo)
        }
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_documented() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
        }
    }
}
