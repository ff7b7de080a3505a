//! Thin wrappers over mount(2) with errors that name the mount.

use crate::fs::layout::MountStep;
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting {fstype} at {target}: {source}")]
    Mount { fstype: String, target: PathBuf, source: nix::Error },
    #[error("creating directory {path}: {source}")]
    Mkdir { path: PathBuf, source: std::io::Error },
    #[error("moving mount {from} to {to}: {source}")]
    Move { from: PathBuf, to: PathBuf, source: nix::Error },
}

pub fn mkdir_p(path: &Path) -> Result<(), MountError> {
    std::fs::create_dir_all(path).map_err(|source| MountError::Mkdir { path: path.into(), source })
}

pub fn fs(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<(), MountError> {
    mount(Some(source), target, Some(fstype), flags, data).map_err(|e| MountError::Mount {
        fstype: fstype.into(),
        target: target.into(),
        source: e,
    })
}

/// Mounts unless something is mounted there already (the kernel may have done it).
pub fn fs_once(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    match fs(source, target, fstype, flags, data) {
        Err(MountError::Mount { source: nix::Error::EBUSY, .. }) => Ok(()),
        r => r,
    }
}

pub fn move_mount(from: &Path, to: &Path) -> Result<(), MountError> {
    mkdir_p(to)?;
    mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|source| MountError::Move {
        from: from.into(),
        to: to.into(),
        source,
    })
}

pub fn apply(step: &MountStep) -> Result<(), MountError> {
    match step {
        MountStep::Tmpfs { target } => {
            mkdir_p(target)?;
            fs("tmpfs", target, "tmpfs", MsFlags::MS_NODEV | MsFlags::MS_NOSUID, Some("mode=1777"))
        }
        MountStep::Overlay { target, upper, work } => {
            if !upper.exists() {
                mkdir_p(upper)?;
                // The overlay's root directory takes its owner and mode from the upper
                // directory: /root must stay 0700, not become 0755.
                copy_owner_and_mode(target, upper)?;
            }
            mkdir_p(work)?;
            let opts = format!("lowerdir={},upperdir={},workdir={}", target.display(), upper.display(), work.display());
            fs("overlay", target, "overlay", MsFlags::empty(), Some(&opts))
        }
    }
}

fn copy_owner_and_mode(from: &Path, to: &Path) -> Result<(), MountError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let err = |source| MountError::Mkdir { path: to.into(), source };
    let meta = std::fs::metadata(from).map_err(err)?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).map_err(err)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(err)
}
