//! Mounting the persistence filesystem, after a preen-mode e2fsck when it was not cleanly
//! unmounted, and the tmpfs stand-in when there is no device.

use crate::command::{self, CommandError};
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("checking {device} with e2fsck failed; run `e2fsck {device}` by hand to repair it: {source}")]
    Fsck { device: PathBuf, source: CommandError },
    #[error("mounting {device} at {target} failed: {source}")]
    Mount { device: PathBuf, target: PathBuf, source: nix::Error },
    #[error("mounting a tmpfs at {target} failed: {source}")]
    Tmpfs { target: PathBuf, source: nix::Error },
}

/// e2fsck -p exit codes 0 (clean) and 1 (errors corrected) mean the filesystem is usable.
const FSCK_OK: &[i32] = &[0, 1];

pub fn fsck(e2fsck: &Path, device: &Path) -> Result<String, MountError> {
    let dev = device.to_string_lossy();
    command::run_ok(e2fsck, &["-p", &dev], FSCK_OK)
        .map_err(|source| MountError::Fsck { device: device.to_path_buf(), source })
}

pub fn mount_ext4(device: &Path, target: &Path) -> Result<(), MountError> {
    mount(Some(device), target, Some("ext4"), MsFlags::MS_NOATIME | MsFlags::MS_NODEV, None::<&str>)
        .map_err(|source| MountError::Mount { device: device.to_path_buf(), target: target.to_path_buf(), source })
}

pub fn mount_tmpfs(target: &Path) -> Result<(), MountError> {
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NODEV, Some("mode=0755"))
        .map_err(|source| MountError::Tmpfs { target: target.to_path_buf(), source })
}
