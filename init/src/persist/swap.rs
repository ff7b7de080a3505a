//! Swap to a file on the persistence disk (its size: `lightwhale_types::space::swap_bytes`):
//! made once, when there is room, and switched on at every boot unless
//! `lightwhale.swap=off`; switched off at shutdown before the disk is unmounted.

use super::reserve;
use lightwhale_types::space;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The signature at the end of a swap area's first page.
const SIGNATURE: &[u8] = b"SWAPSPACE2";
/// Where the header's fields start (after space left for a boot sector and disk label).
const INFO_OFFSET: usize = 1024;

/// Pure: the first page of a swap area of `bytes` (the kernel's `union swap_header`: version
/// 1, the last usable page, no bad pages, a UUID, no label, the signature).
pub fn header(page_size: usize, bytes: u64, uuid: [u8; 16]) -> Vec<u8> {
    let mut page = vec![0u8; page_size];
    let last_page = (bytes / page_size as u64).saturating_sub(1).min(u32::MAX as u64) as u32;
    page[INFO_OFFSET..INFO_OFFSET + 4].copy_from_slice(&1u32.to_ne_bytes());
    page[INFO_OFFSET + 4..INFO_OFFSET + 8].copy_from_slice(&last_page.to_ne_bytes());
    // nr_badpages (4 bytes) stays 0.
    page[INFO_OFFSET + 12..INFO_OFFSET + 28].copy_from_slice(&uuid);
    page[page_size - SIGNATURE.len()..].copy_from_slice(SIGNATURE);
    page
}

/// At boot, after the reserve: switch the swap file on, making it first when it is missing
/// and there is room. Logs what it did and why not.
pub fn at_boot(enabled: bool, file: &Path, uuid: [u8; 16]) {
    if !enabled {
        log::info!("swap: off (lightwhale.swap=off)");
        return;
    }
    if !file.exists() {
        let Some(bytes) = size_if_room(file) else { return };
        if let Err(e) = make(file, bytes, uuid) {
            log::warn!("swap: making the {} MiB swap file {}: {e}; no swap on this boot", bytes >> 20, file.display());
            return;
        }
    }
    match swapon(file) {
        Ok(()) => {
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            log::info!("swap: {} MiB in {}", size >> 20, file.display());
        }
        Err(e) => log::warn!(
            "swap: switching on {}: {e}; remove the file to have it made again at the next boot",
            file.display()
        ),
    }
}

/// The swap file's size by the rule, when the disk has room for it; logs why not.
fn size_if_room(file: &Path) -> Option<u64> {
    let u = reserve::usage(file.parent()?).ok()?;
    let bytes = space::swap_bytes(ram_bytes(), u.size);
    if bytes == 0 {
        log::info!("swap: none, the persistence disk is too small for a swap file");
        return None;
    }
    if !space::room_for_swap(u.size, u.free, bytes) {
        log::info!(
            "swap: no swap file yet: {} MiB would leave less than a quarter of the disk free ({} MiB free)",
            bytes >> 20,
            u.free >> 20
        );
        return None;
    }
    Some(bytes)
}

/// Switches off the swap file if it is on (at shutdown, before the unmount).
pub fn off(file: &Path) {
    let on = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if !on.lines().skip(1).any(|l| l.split_whitespace().next() == Some(&*file.to_string_lossy())) {
        return;
    }
    let Ok(c) = CString::new(file.as_os_str().as_bytes()) else { return };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
        log::warn!("shutdown: swapoff {}: {}", file.display(), io::Error::last_os_error());
    }
}

fn swapon(file: &Path) -> io::Result<()> {
    let c = CString::new(file.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path.
    match unsafe { libc::swapon(c.as_ptr(), 0) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A swap file must have no holes: its blocks are allocated, then the header written.
fn make(file: &Path, bytes: u64, uuid: [u8; 16]) -> io::Result<()> {
    reserve::preallocated(file, bytes, &header(page_size(), bytes, uuid))
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

fn ram_bytes() -> u64 {
    // SAFETY: info is a valid, writable sysinfo struct.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    info.totalram as u64 * info.mem_unit.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_kernels_swap_header() {
        let uuid = *b"0123456789abcdef";
        let page = header(4096, 87 << 20, uuid);
        assert_eq!(page.len(), 4096);
        assert_eq!(&page[4086..], b"SWAPSPACE2");
        assert_eq!(u32::from_ne_bytes(page[1024..1028].try_into().unwrap()), 1, "version");
        assert_eq!(u32::from_ne_bytes(page[1028..1032].try_into().unwrap()), (87 << 8) - 1, "last page");
        assert_eq!(&page[1032..1036], &[0; 4], "bad pages");
        assert_eq!(&page[1036..1052], &uuid);
        assert!(page[..1024].iter().all(|b| *b == 0), "the boot sector area is left empty");
    }

    #[test]
    fn the_same_first_page_as_util_linux_mkswap() {
        let dir = std::env::temp_dir().join(format!("lw-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
        let uuid = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        make(&ours, 8 << 20, uuid).unwrap();
        assert!(!dir.join("ours.tmp").exists());
        std::fs::write(&theirs, vec![0u8; 8 << 20]).unwrap();
        let out = std::process::Command::new("mkswap")
            .args(["-U", "12345678-9abc-def0-0123-456789abcdef"])
            .arg(&theirs)
            .output()
            .expect("mkswap (util-linux) runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let page = page_size();
        let first = |p: &Path| std::fs::read(p).unwrap()[..page].to_vec();
        assert_eq!(first(&ours), first(&theirs));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
