//! Attaches a file to a free loop device (read-only), the way `losetup -r` does.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{what} on {path}: {source}")]
    Ioctl { what: &'static str, path: PathBuf, source: std::io::Error },
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device. With autoclear the kernel detaches it when the last user
/// closes it, so keep this alive until the filesystem on it is mounted.
pub struct LoopDevice {
    pub path: PathBuf,
    _fd: File,
}

/// Attaches `file` read-only to a free loop device, e.g. `/dev/loop0`.
pub fn attach_read_only(file: &Path) -> Result<LoopDevice, LoopError> {
    let ctl_path = PathBuf::from("/dev/loop-control");
    let ctl = File::open(&ctl_path).map_err(|source| LoopError::Open { path: ctl_path.clone(), source })?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
    if n < 0 {
        return Err(LoopError::Ioctl {
            what: "LOOP_CTL_GET_FREE",
            path: ctl_path,
            source: std::io::Error::last_os_error(),
        });
    }
    let dev_path = PathBuf::from(format!("/dev/loop{n}"));
    let backing = File::open(file).map_err(|source| LoopError::Open { path: file.into(), source })?;
    let dev = OpenOptions::new()
        .read(true)
        .open(&dev_path)
        .map_err(|source| LoopError::Open { path: dev_path.clone(), source })?;
    // SAFETY: all-zero is a valid LoopConfig (plain integers and byte arrays).
    let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
    cfg.fd = backing.as_raw_fd() as u32;
    cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    let name = file.as_os_str().as_encoded_bytes();
    let len = name.len().min(63);
    cfg.info.lo_file_name[..len].copy_from_slice(&name[..len]);
    // SAFETY: cfg is a properly laid out loop_config that outlives the call.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
    if rc < 0 {
        return Err(LoopError::Ioctl {
            what: "LOOP_CONFIGURE",
            path: dev_path,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(LoopDevice { path: dev_path, _fd: dev })
}

#[cfg(test)]
mod tests {
    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<super::LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<super::LoopConfig>(), 304);
    }
}
