//! Stage 1, in the initramfs: mount the kernel's filesystems, load the few modules needed
//! to mount the image, verify and mount it, and switch root into it.

use crate::fs::mounts::{self, MountError};
use crate::kernel::{kmod, loopdev};
use crate::logging::console;
use crate::{cmdline, image};
use nix::mount::MsFlags;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub const NEW_ROOT: &str = "/newroot";

#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error("stage 1: {0}")]
    Mount(#[from] MountError),
    #[error("stage 1: loading the initramfs modules: {0}")]
    Modules(#[from] kmod::ModuleError),
    #[error("stage 1: {0}")]
    Image(#[from] image::ImageError),
    #[error("stage 1: attaching the image to a loop device: {0}")]
    Loop(#[from] loopdev::LoopError),
    #[error("stage 1: switching root to {NEW_ROOT}: {step}: {source}")]
    Switch { step: &'static str, source: nix::Error },
}

/// Mounts /proc, /sys, /dev and /run; safe to call when some are already mounted.
pub fn mount_kernel_filesystems() -> Result<(), MountError> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for (src, target, fstype, flags, data) in [
        ("proc", "/proc", "proc", nodev, None),
        ("sysfs", "/sys", "sysfs", nodev, None),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
        ("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755")),
    ] {
        mounts::mkdir_p(Path::new(target))?;
        mounts::fs_once(src, Path::new(target), fstype, flags, data)?;
    }
    Ok(())
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// Everything from the first instruction up to running inside the image.
pub fn run() -> Result<cmdline::Options, Stage1Error> {
    mount_kernel_filesystems()?;
    let opts = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    console::init(opts.debug);
    log::info!("init started: Lightwhale {} stage 1 (initramfs)", env!("CARGO_PKG_VERSION"));
    for u in &opts.unknown {
        log::warn!("unknown kernel option {u} ignored (known: {})", cmdline::KNOWN);
    }

    load_initramfs_modules()?;
    let step = console::Step::start("image verified");
    let size = image::verify_image(
        Path::new(image::SQUASHFS),
        Path::new(image::SQUASHFS_SHA256),
        Path::new(image::SQUASHFS_CHUNKS),
    )?;
    step.done(&format!("{} MiB, SHA-256 matches", size >> 20));
    mount_image()?;
    let step = console::Step::start("switch root");
    switch_root(Path::new(NEW_ROOT))?;
    step.done("now running in the image");
    Ok(opts)
}

/// Loads every module the initramfs carries (loop, squashfs and their dependencies).
pub fn load_initramfs_modules() -> Result<(), Stage1Error> {
    let step = console::Step::start("initramfs modules");
    let release = kernel_release();
    let loader = kmod::Loader::open(&Path::new("/lib/modules").join(&release))?;
    let names: Vec<String> = loader.deps.names().map(str::to_string).collect();
    let (loaded, errors) = loader.load(names.iter().map(String::as_str));
    if let Some(e) = errors.into_iter().next() {
        return Err(e.into());
    }
    step.done(&format!("{} loaded for kernel {release}", loaded.join(", ")));
    Ok(())
}

/// Loop-mounts the squashfs read-only at NEW_ROOT.
pub fn mount_image() -> Result<(), Stage1Error> {
    let step = console::Step::start("squashfs mounted");
    let dev = loopdev::attach_read_only(Path::new(image::SQUASHFS))?;
    let root = Path::new(NEW_ROOT);
    mounts::mkdir_p(root)?;
    mounts::fs(&dev.path.to_string_lossy(), root, "squashfs", MsFlags::MS_RDONLY | MsFlags::MS_NODEV, None)?;
    step.done(&format!("{} on {NEW_ROOT} (read-only)", dev.path.display()));
    drop(dev);
    Ok(())
}

/// Like util-linux switch_root: move the kernel filesystems, free the initramfs, then
/// make the image the root. PID 1 keeps running this same process (stage 2 continues
/// in-process), so no second copy of the init needs to live in the image.
pub fn switch_root(root: &Path) -> Result<(), Stage1Error> {
    for m in ["dev", "proc", "sys", "run"] {
        mounts::move_mount(&Path::new("/").join(m), &root.join(m))?;
    }
    let sw = |step| move |source| Stage1Error::Switch { step, source };
    nix::unistd::chdir(root).map_err(sw("chdir"))?;
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
    // The initramfs is RAM; its files (including the squashfs, which stays alive through
    // the loop device) are freed here.
    remove_tree(Path::new("/"), root_dev, root);
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sw("move new root to /"))?;
    nix::unistd::chroot(".").map_err(sw("chroot"))?;
    nix::unistd::chdir("/").map_err(sw("chdir /"))?;
    Ok(())
}

fn remove_tree(dir: &Path, dev: u64, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p == keep {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            remove_tree(&p, dev, keep);
            let _ = std::fs::remove_dir(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}
