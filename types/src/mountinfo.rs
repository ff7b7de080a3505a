//! `/proc/self/mountinfo`: the one parser for it, used by the init's shutdown and by the
//! image builder (which must never delete a tree through a leftover bind mount).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo, the fields that say what is mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
    /// The filesystem's own options (an overlay's lowerdir/upperdir, for instance).
    pub super_options: String,
}

/// Pure: every mount, in mount order (oldest first). The fields after the ` - ` separator
/// are the type, the source and the filesystem's options.
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let point = unescape(l.split(' ').nth(4)?);
            let (_, after) = l.split_once(" - ")?;
            let mut f = after.split(' ');
            let (fstype, source, opts) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            Some(Mount {
                point,
                fstype: fstype.into(),
                source: unescape_str(source),
                super_options: unescape_str(opts),
            })
        })
        .collect()
}

/// Pure: every mount point, in mount order (oldest first), with the kernel's octal
/// escapes (space, tab, newline, backslash) undone.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape).collect()
}

fn unescape_str(field: &str) -> String {
    unescape(field).to_string_lossy().into_owned()
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
    fn mounts_have_type_source_and_options() {
        let m = mounts(INFO);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].point, Path::new("/mnt/lightwhale-data"));
        assert_eq!(
            (m[1].fstype.as_str(), m[1].source.as_str(), m[1].super_options.as_str()),
            ("ext4", "/dev/sda1", "rw")
        );
        let ov = "29 22 0:30 / /etc rw,relatime shared:9 - overlay overlay rw,lowerdir=/etc,upperdir=/mnt/lightwhale-data/overlay/etc/upper,workdir=/w\n";
        let m = mounts(ov);
        assert_eq!(m[0].fstype, "overlay");
        assert!(m[0].super_options.contains("upperdir=/mnt/lightwhale-data/overlay/etc/upper"));
    }

    #[test]
    fn a_truncated_escape_is_kept_as_is() {
        assert_eq!(unescape("/a\\04"), PathBuf::from("/a\\04"));
    }
}
