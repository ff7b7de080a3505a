//! Claims a disk: partition table, ext4, then erase the header. The header is checked
//! again here, on bytes this code read itself, right before the first write: nothing
//! reaches a write without it.
//!
//! Crash safety comes from the order: until the last step the magic header is still at
//! byte 0, so a power cut anywhere makes the next boot start the claim again; the header
//! is erased only after the filesystem is complete and flushed.

use super::{gpt, header, scan};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("claim {disk}: opening {path} for writing: {source} (is it mounted or in use?)")]
    Open { disk: String, path: PathBuf, source: std::io::Error },
    #[error("claim {disk}: reading its first bytes: {source}")]
    Read { disk: String, source: std::io::Error },
    #[error("claim {disk}: the magic header is not at byte 0 any more; nothing was written")]
    NoMagic { disk: String },
    #[error("claim {disk}: it holds a boot image; nothing was written")]
    BootImage { disk: String },
    #[error("claim {disk}: {what} ioctl failed: {source}")]
    Ioctl { disk: String, what: &'static str, source: nix::Error },
    #[error("claim {disk}: {source}")]
    Layout { disk: String, source: gpt::GptError },
    #[error("claim {disk}: writing {what} at byte {offset}: {source}")]
    Write { disk: String, what: &'static str, offset: u64, source: std::io::Error },
    #[error("claim {disk}: partition {part} did not appear within {secs} s after re-reading the partition table")]
    NoPartition { disk: String, part: String, secs: u64 },
    #[error("claim {disk}: it does not lie wholly after the boot image on {parent} (or its place there is unknown); nothing was written")]
    InBootImage { disk: String, parent: String },
    #[error("claim {disk}: its disk {parent} has the magic header and is claimed whole; nothing was written")]
    DiskHasMagic { disk: String, parent: String },
    #[error("claim {disk}: creating the filesystem on {part} failed: {detail}")]
    Mkfs { disk: String, part: String, detail: String },
}

nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
pub(super) use blk_getsize64 as block_device_size;
nix::ioctl_read_bad!(blk_sszget, 0x1268, libc::c_int);
nix::ioctl_none!(blk_rrpart, 0x12, 95);
nix::ioctl_write_ptr_bad!(blk_pg, 0x1269, BlkpgIoctlArg);

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut BlkpgPartition,
}

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

const BLKPG_ADD_PARTITION: libc::c_int = 1;

/// Where to find things; the real system uses `/dev` and `/sys/class/block`, host tests
/// use the same paths with loop devices.
pub struct Paths<'a> {
    pub dev: &'a Path,
    pub sys_class_block: &'a Path,
}

/// Runs mkfs for the new partition, the filesystem as long as the given bytes when there
/// are some (else the whole partition). Injected so host tests can use the host's mke2fs
/// and the image uses its own.
pub type Mkfs<'a> = &'a dyn Fn(&Path, Option<u64>) -> Result<(), String>;

/// mke2fs's arguments for the persistence filesystem on `part`, `fs_bytes` long if given.
pub fn mkfs_args(part: &Path, fs_bytes: Option<u64>) -> Vec<String> {
    let mut args: Vec<String> = ["-q", "-F", "-t", "ext4", "-L", super::LABEL, "-E", "lazy_itable_init=1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(part.to_string_lossy().into_owned());
    if let Some(bytes) = fs_bytes {
        args.push(format!("{}k", bytes / 1024));
    }
    args
}

pub const STEPS: u32 = 4;

/// Claims `disk`; returns the name of the new partition (e.g. `sda1`).
pub fn claim(disk: &str, paths: &Paths, mkfs: Mkfs, random: [u8; 32]) -> Result<String, ClaimError> {
    let dev_path = paths.dev.join(disk);
    let file = open_exclusive(disk, &dev_path)?;

    let mut head = Vec::new();
    (&file)
        .take(header::PROBE_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|source| ClaimError::Read { disk: disk.into(), source })?;
    if !header::has_magic(&head) {
        return Err(ClaimError::NoMagic { disk: disk.into() });
    }
    if header::image_kind(&head).is_image() {
        return Err(ClaimError::BootImage { disk: disk.into() });
    }

    let fd = file.as_raw_fd();
    let ioctl_err = |what, source| ClaimError::Ioctl { disk: disk.into(), what, source };
    let mut size: u64 = 0;
    // SAFETY: fd is an open block device and size is a valid out pointer.
    unsafe { blk_getsize64(fd, &mut size) }.map_err(|e| ioctl_err("BLKGETSIZE64", e))?;
    let mut ssz: libc::c_int = 0;
    // SAFETY: as above.
    unsafe { blk_sszget(fd, &mut ssz) }.map_err(|e| ioctl_err("BLKSSZGET", e))?;

    let (a, b) = random.split_at(16);
    let layout = gpt::layout(
        size,
        ssz as u64,
        &head[..(ssz as usize).min(head.len())],
        gpt::random_guid(a.try_into().unwrap_or_default()),
        gpt::random_guid(b.try_into().unwrap_or_default()),
    )
    .map_err(|source| ClaimError::Layout { disk: disk.into(), source })?;

    let part = scan::partition_name(disk, 1);
    log::info!(
        "claim {disk}: step 1/{STEPS}: writing the partition table ({} MiB partition {part})",
        layout.partition_bytes() >> 20
    );
    for w in &layout.writes {
        file.write_all_at(&w.data, w.offset).map_err(|source| ClaimError::Write {
            disk: disk.into(),
            what: "partition table",
            offset: w.offset,
            source,
        })?;
    }
    file.sync_all().map_err(|source| ClaimError::Write {
        disk: disk.into(),
        what: "partition table (flush)",
        offset: 0,
        source,
    })?;
    // SAFETY: fd is an open block device.
    unsafe { blk_rrpart(fd) }.map_err(|e| ioctl_err("BLKRRPART (re-read partition table)", e))?;
    if wait_for_node(paths, disk, &part, Duration::from_secs(3)).is_err() {
        // A kernel that cannot parse GPT itself (some minimal VM kernels) still accepts
        // the partition when told where it is, as `partx --add` does.
        log::info!("claim {disk}: the kernel did not pick up the new partition table; adding {part} explicitly");
        let mut p = BlkpgPartition {
            start: (layout.first_lba * layout.sector_size) as libc::c_longlong,
            length: layout.partition_bytes() as libc::c_longlong,
            pno: 1,
            devname: [0; 64],
            volname: [0; 64],
        };
        let arg = BlkpgIoctlArg {
            op: BLKPG_ADD_PARTITION,
            flags: 0,
            datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
            data: &mut p,
        };
        // SAFETY: arg points to a valid blkpg_partition for the duration of the call.
        unsafe { blk_pg(fd, &arg) }.map_err(|e| ioctl_err("BLKPG_ADD_PARTITION", e))?;
        wait_for_node(paths, disk, &part, Duration::from_secs(10))?;
    }

    // mke2fs opens the partition exclusively, which our exclusive hold on the whole disk
    // would block; nothing else can grab the disk meanwhile (early boot, no automounter).
    drop(file);

    log::info!("claim {disk}: step 2/{STEPS}: creating the ext4 filesystem on {part}");
    let part_path = paths.dev.join(&part);
    mkfs(&part_path, None).map_err(|detail| ClaimError::Mkfs { disk: disk.into(), part: part.clone(), detail })?;

    log::info!("claim {disk}: step 3/{STEPS}: flushing {part} to the device");
    let flush = |p: &Path| File::open(p).and_then(|f| f.sync_all());
    flush(&part_path).map_err(|source| ClaimError::Write {
        disk: disk.into(),
        what: "filesystem (flush)",
        offset: 0,
        source,
    })?;

    log::info!("claim {disk}: step 4/{STEPS}: erasing the magic header");
    let file = open_exclusive(disk, &dev_path)?;
    let mut sector0 = vec![0u8; gpt::MBR_BOOT_CODE_LEN];
    file.read_exact_at(&mut sector0, 0).map_err(|source| ClaimError::Read { disk: disk.into(), source })?;
    if !header::has_magic(&sector0) {
        return Err(ClaimError::NoMagic { disk: disk.into() });
    }
    let zeros = vec![0u8; gpt::MBR_BOOT_CODE_LEN];
    file.write_all_at(&zeros, 0).map_err(|source| ClaimError::Write {
        disk: disk.into(),
        what: "header erase",
        offset: 0,
        source,
    })?;
    file.sync_all().map_err(|source| ClaimError::Write {
        disk: disk.into(),
        what: "header erase (flush)",
        offset: 0,
        source,
    })?;
    Ok(part)
}

/// Read-write with O_EXCL: on a block device that fails if anything has it mounted.
pub(super) fn open_exclusive(disk: &str, dev_path: &Path) -> Result<File, ClaimError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(dev_path)
        .map_err(|source| ClaimError::Open { disk: disk.into(), path: dev_path.to_path_buf(), source })
}

fn wait_for_node(paths: &Paths, disk: &str, part: &str, timeout: Duration) -> Result<(), ClaimError> {
    let start = Instant::now();
    loop {
        if paths.sys_class_block.join(part).exists() && paths.dev.join(part).exists() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(ClaimError::NoPartition { disk: disk.into(), part: part.into(), secs: timeout.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
