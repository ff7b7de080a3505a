//! Lists block devices from sysfs and reads their first bytes. The parsing is done by the
//! pure modules; this file only gathers bytes, and runs inside the sandboxed child.

use super::decide::DeviceReport;
use super::{ext4, header};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDev {
    pub name: String,
    pub parent: Option<String>,
    pub size_bytes: u64,
    pub read_only: bool,
    /// For a partition: where it starts on its disk.
    pub start_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("listing block devices in {path}: {source}")]
    List { path: PathBuf, source: std::io::Error },
}

/// Devices that can never hold persistence: RAM disks, our own loop-mounted image,
/// compressed swap.
pub fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "zram", "nbd"].iter().any(|p| name.starts_with(p))
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Every block device in `sys_class_block` (normally `/sys/class/block`) that is not virtual.
pub fn list(sys_class_block: &Path) -> Result<Vec<BlockDev>, ScanError> {
    let rd = std::fs::read_dir(sys_class_block)
        .map_err(|source| ScanError::List { path: sys_class_block.to_path_buf(), source })?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_virtual(&name) {
            continue;
        }
        if let Some(dev) = describe(sys_class_block, &name) {
            out.push(dev);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads one device's sysfs attributes. Also used directly by host tests on loop devices.
pub fn describe(sys_class_block: &Path, name: &str) -> Option<BlockDev> {
    let dir = sys_class_block.join(name);
    let sectors: u64 = read_trimmed(&dir.join("size"))?.parse().ok()?;
    let parent = if dir.join("partition").exists() {
        std::fs::canonicalize(&dir)
            .ok()
            .and_then(|p| p.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()))
    } else {
        None
    };
    // sysfs sizes and starts are always in 512-byte units, whatever the logical sector size.
    let start_bytes = match parent {
        Some(_) => Some(read_trimmed(&dir.join("start"))?.parse::<u64>().ok()? * 512),
        None => None,
    };
    Some(BlockDev {
        name: name.to_string(),
        parent,
        size_bytes: sectors * 512,
        read_only: read_trimmed(&dir.join("ro")).as_deref() == Some("1"),
        start_bytes,
    })
}

/// Reads the first bytes of the device node (and a partition's last ones, for the claim
/// marker) and turns them into a report. A device that cannot be read (empty CD drive,
/// dying disk) is reported as blank.
pub fn probe(dev_dir: &Path, dev: &BlockDev) -> DeviceReport {
    use std::os::unix::fs::FileExt;
    let mut head = Vec::with_capacity(header::PROBE_LEN);
    let mut tail = Vec::new();
    if dev.size_bytes > 0 {
        match std::fs::File::open(dev_dir.join(&dev.name)) {
            Ok(f) => {
                if let Err(e) = (&f).take(header::PROBE_LEN as u64).read_to_end(&mut head) {
                    log::debug!("{}: read failed: {e}", dev.name);
                }
                let len = header::CLAIM_MARKER_LEN as u64;
                if dev.parent.is_some() && dev.size_bytes >= 2 * len {
                    tail = vec![0u8; len as usize];
                    if f.read_exact_at(&mut tail, dev.size_bytes - len).is_err() {
                        tail.clear();
                    }
                }
            }
            Err(e) => log::debug!("{}: open failed: {e}", dev.name),
        }
    }
    report(dev, &head, &tail)
}

/// Pure: the report for a device given its first bytes and, for a partition, its last
/// [`header::CLAIM_MARKER_LEN`] bytes.
pub fn report(dev: &BlockDev, head: &[u8], tail: &[u8]) -> DeviceReport {
    DeviceReport {
        name: dev.name.clone(),
        parent: dev.parent.clone(),
        size_bytes: dev.size_bytes,
        read_only: dev.read_only,
        magic: header::has_magic(head),
        image: header::image_kind(head),
        ext4: ext4::parse(head),
        seed: crate::persist::header::seed_kind(head),
        start_bytes: dev.start_bytes,
        image_bytes: header::image_bytes(head),
        claim_marker: dev.parent.is_some() && header::has_claim_marker(tail),
    }
}

/// The whole scan as run in the sandboxed child.
pub fn scan_all(sys_class_block: &Path, dev_dir: &Path) -> Result<Vec<DeviceReport>, ScanError> {
    Ok(list(sys_class_block)?.iter().map(|d| probe(dev_dir, d)).collect())
}

/// What is wrong with the sandboxed scan's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReport {
    #[error("device name {0:?} is not a kernel block device name")]
    NotAName(String),
    #[error("device {0:?} is not in /sys/class/block")]
    Unknown(String),
    #[error("device {0:?} is reported twice")]
    Twice(String),
}

/// Pure: checks the sandboxed scan's answer against the device names PID 1 sees itself
/// (`known`, from its own listing of /sys/class/block). A name that is not a plain kernel
/// name, or that PID 1 does not see, means the child is broken or hostile: the whole
/// answer is refused.
pub fn validate(reports: &[DeviceReport], known: &[String]) -> Result<(), BadReport> {
    let plain = |n: &str| {
        !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut seen: Vec<&str> = Vec::new();
    for r in reports {
        for name in std::iter::once(r.name.as_str()).chain(r.parent.as_deref()) {
            if !plain(name) {
                return Err(BadReport::NotAName(name.into()));
            }
            if !known.iter().any(|k| k == name) {
                return Err(BadReport::Unknown(name.into()));
            }
        }
        if seen.contains(&r.name.as_str()) {
            return Err(BadReport::Twice(r.name.clone()));
        }
        seen.push(&r.name);
    }
    Ok(())
}

/// `sda` + 1 -> `sda1`; `nvme0n1` + 1 -> `nvme0n1p1` (the kernel's rule).
pub fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(partition_name("sda", 1), "sda1");
        assert_eq!(partition_name("vdb", 1), "vdb1");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
        assert_eq!(partition_name("mmcblk0", 1), "mmcblk0p1");
        assert_eq!(partition_name("loop7", 1), "loop7p1");
    }

    #[test]
    fn magic_on_disks_and_partitions_the_claim_marker_on_partitions_only() {
        let head = b"lightwhale-please-format-me\n";
        let whole = BlockDev { name: "sda".into(), size_bytes: 1 << 30, ..Default::default() };
        let part =
            BlockDev { name: "sda1".into(), parent: Some("sda".into()), start_bytes: Some(1 << 20), ..whole.clone() };
        assert!(report(&whole, head, &[]).magic);
        let p = report(&part, head, &[]);
        assert!(p.magic && p.start_bytes == Some(1 << 20) && !p.claim_marker);
        let marker = header::claim_marker();
        assert!(report(&part, &[], &marker).claim_marker);
        assert!(!report(&whole, &[], &marker).claim_marker);
    }

    #[test]
    fn answers_naming_unknown_or_odd_devices_are_refused() {
        let known: Vec<String> = ["sda", "sda1", "sr0"].map(String::from).to_vec();
        let dev = |name: &str, parent: Option<&str>| {
            report(
                &BlockDev {
                    name: name.into(),
                    parent: parent.map(String::from),
                    size_bytes: 1 << 30,
                    ..Default::default()
                },
                &[],
                &[],
            )
        };
        assert!(validate(&[dev("sda", None), dev("sda1", Some("sda"))], &known).is_ok());
        assert_eq!(validate(&[dev("sdb", None)], &known), Err(BadReport::Unknown("sdb".into())));
        assert_eq!(validate(&[dev("../sda", None)], &known), Err(BadReport::NotAName("../sda".into())));
        assert_eq!(validate(&[dev("sda1", Some("../../etc"))], &known), Err(BadReport::NotAName("../../etc".into())));
        assert_eq!(validate(&[dev("sda", None), dev("sda", None)], &known), Err(BadReport::Twice("sda".into())));
        let slash: Vec<String> = vec!["mapper/x".into()];
        assert!(validate(&[dev("mapper/x", None)], &slash).is_err());
    }

    #[test]
    fn virtual_devices_are_skipped() {
        assert!(is_virtual("loop0"));
        assert!(is_virtual("zram0"));
        assert!(!is_virtual("sda"));
        assert!(!is_virtual("nvme0n1"));
    }
}
