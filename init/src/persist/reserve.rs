//! The reserve on the persistence disk (the rules: `lightwhale_types::space`): a file of
//! preallocated blocks that the init deletes at boot when the disk is full, so that Docker,
//! sshd and the logs have room to start and the user can free space with Docker's own
//! commands; made again once there is room. Nothing of the user's is ever deleted.

use lightwhale_types::space::{self, Reserve, ReserveStep};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// A filesystem's size and the bytes root can still write.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub size: u64,
    pub free: u64,
}

pub fn usage(path: &Path) -> io::Result<Usage> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frag = st.fragment_size() as u64;
    Ok(Usage { size: st.blocks() as u64 * frag, free: st.blocks_free() as u64 * frag })
}

/// At boot, before any service: release the reserve when the disk is full, make it when it
/// is missing and there is room. Logs what it did; returns the state for `lightwhale status`.
pub fn at_boot(file: &Path) -> Option<Reserve> {
    let dir = file.parent()?;
    let u = match usage(dir) {
        Ok(u) => u,
        Err(e) => {
            log::warn!("persistence: reading the free space of {}: {e}", dir.display());
            return None;
        }
    };
    let bytes = space::reserve_bytes(u.size);
    let held = file.exists();
    let mut reserve = Reserve { bytes, held, released_at_boot: false };
    match space::step(u.size, u.free, held) {
        ReserveStep::Keep => {}
        ReserveStep::Release => match std::fs::remove_file(file) {
            Ok(()) => {
                reserve.held = false;
                reserve.released_at_boot = true;
                for line in full_disk_warning(u, bytes) {
                    log::warn!("{line}");
                }
            }
            Err(e) => log::error!("persistence: the disk is full and its reserve could not be released: {e}"),
        },
        ReserveStep::Make => reserve.held = make(file, bytes),
        ReserveStep::Wait => log::warn!(
            "persistence: the disk is full ({} MiB of {} MiB free) and has no reserve left; \
             free space (`docker system prune`, `docker volume rm`, old files): {} MiB free make the reserve again",
            u.free >> 20,
            u.size >> 20,
            (2 * bytes) >> 20
        ),
    }
    Some(reserve)
}

fn full_disk_warning(u: Usage, bytes: u64) -> [String; 4] {
    [
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!".to_string(),
        format!(
            "THE PERSISTENCE DISK IS FULL: {} MiB of {} MiB free. Its {} MiB reserve was released",
            u.free >> 20,
            u.size >> 20,
            bytes >> 20
        ),
        "so that Docker and sshd can start. Free space now: `docker system prune`, `docker volume rm`,".to_string(),
        format!("old files. The reserve is made again once {} MiB are free.", (2 * bytes) >> 20),
    ]
}

/// While the services run: make the reserve again once there is room. Returns whether it
/// changed.
pub fn recheck(file: &Path, reserve: &mut Reserve) -> bool {
    if reserve.held {
        return false;
    }
    let Some(u) = file.parent().and_then(|d| usage(d).ok()) else { return false };
    if space::step(u.size, u.free, false) != ReserveStep::Make || !make(file, reserve.bytes) {
        return false;
    }
    reserve.held = true;
    log::info!("persistence: {} MiB free again; the {} MiB reserve is back", u.free >> 20, reserve.bytes >> 20);
    true
}

/// Makes the reserve.
fn make(file: &Path, bytes: u64) -> bool {
    match preallocated(file, bytes, &[]) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("persistence: making the {} MiB reserve {}: {e}", bytes >> 20, file.display());
            false
        }
    }
}

/// A root-only file of `bytes` whose blocks are allocated for real (fallocate: no holes),
/// starting with `head`, made under a temporary name and renamed when complete, so a crash
/// never leaves a short file under the name.
pub(super) fn preallocated(file: &Path, bytes: u64, head: &[u8]) -> io::Result<()> {
    let tmp = file.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        // SAFETY: f is an open, writable regular file.
        if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, bytes as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f.write_all_at(head, 0)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn made_with_its_blocks_allocated_and_root_only() {
        let dir = std::env::temp_dir().join(format!("lw-reserve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("reserve");
        let bytes = 4 << 20;
        assert!(make(&file, bytes));
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!(m.len(), bytes);
        assert!(m.blocks() * 512 >= bytes, "fallocate left holes: {} blocks", m.blocks());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert!(!dir.join("reserve.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
