//! `/proc/self/mountinfo`: the one parser for it, used by the init's shutdown and by the
//! image builder (which must never delete a tree through a leftover bind mount).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Pure: every mount point, in mount order (oldest first), with the kernel's octal
/// escapes (space, tab, newline, backslash) undone.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape).collect()
}

/// Pure: the mount points at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points(mountinfo).into_iter().filter(|m| m.starts_with(dir)).collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    v.dedup();
    v
}

/// The current process's mount points (empty if /proc is not mounted).
pub fn current() -> Vec<PathBuf> {
    mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// mountinfo writes space, tab, newline and backslash as a backslash and three octal digits.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let n = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(n as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro
28 22 8:1 / /mnt/lightwhale-data rw - ext4 /dev/sda1 rw
30 22 0:31 / /work/my\\040checkout/out/build/rootfs rw - tmpfs tmpfs rw
31 30 0:32 / /work/my\\040checkout/out/build/rootfs/proc rw - proc proc rw
32 22 0:33 / /tab\\011and\\134backslash\\012 rw - tmpfs tmpfs rw
";

    #[test]
    fn escapes_are_undone() {
        let m = mount_points(INFO);
        assert_eq!(m[2], Path::new("/work/my checkout/out/build/rootfs"));
        assert_eq!(m[4], Path::new("/tab\tand\\backslash\n"));
    }

    #[test]
    fn below_a_directory_with_a_space_deepest_first() {
        let below = mounts_below(INFO, Path::new("/work/my checkout/out/build/rootfs"));
        assert_eq!(
            below,
            vec![
                PathBuf::from("/work/my checkout/out/build/rootfs/proc"),
                PathBuf::from("/work/my checkout/out/build/rootfs")
            ]
        );
        // A sibling whose name merely starts the same is not below.
        assert!(mounts_below(INFO, Path::new("/work/my checkout/out/build/root")).is_empty());
    }

    #[test]
    fn a_truncated_escape_is_kept_as_is() {
        assert_eq!(unescape("/a\\04"), PathBuf::from("/a\\04"));
    }
}
