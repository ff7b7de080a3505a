//! Claims one partition: only that partition is written, never its disk's partition table
//! or anything outside the partition. What makes it safe is checked again here on bytes this
//! code read itself: the partition asks for it (the magic header at its start, or the marker
//! of its own claim cut short at its end), its disk does not ask to be claimed whole, and it
//! starts after the end of any boot image on its disk.
//!
//! Crash safety: mke2fs erases the partition's first sectors (and with them the header)
//! before the filesystem is complete, so the claim first writes a marker into the
//! partition's last [`header::CLAIM_MARKER_LEN`] bytes, which the filesystem is made too
//! short to reach. Until the marker is erased, last of all, the next boot claims the
//! partition again.

use super::claim::{block_device_size, open_exclusive, ClaimError, Mkfs, Paths};
use super::header;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub const STEPS: u32 = 4;

/// The first sector, where the header is written (`printf ... > /dev/sdXN`).
const HEAD_LEN: usize = 512;

/// Claims `partition` of `disk`.
pub fn claim_partition(partition: &str, disk: &str, paths: &Paths, mkfs: Mkfs) -> Result<(), ClaimError> {
    let part_path = paths.dev.join(partition);
    let file = open_exclusive(partition, &part_path)?;
    let size = device_size(partition, &file)?;
    let marker_at =
        size.checked_sub(header::CLAIM_MARKER_LEN as u64).ok_or(ClaimError::NoMagic { disk: partition.into() })?;
    let read = |f: &File, offset: u64, len: usize| {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map(|_| buf)
            .map_err(|source| ClaimError::Read { disk: partition.into(), source })
    };
    let head = read(&file, 0, HEAD_LEN)?;
    let tail = read(&file, marker_at, header::CLAIM_MARKER_LEN)?;
    if !header::has_magic(&head) && !header::has_claim_marker(&tail) {
        return Err(ClaimError::NoMagic { disk: partition.into() });
    }
    check_place(partition, disk, paths)?;

    let write = |file: &File, what: &'static str, offset: u64, data: &[u8]| {
        file.write_all_at(data, offset).and_then(|_| file.sync_all()).map_err(|source| ClaimError::Write {
            disk: partition.into(),
            what,
            offset,
            source,
        })
    };
    log::info!("claim {partition}: step 1/{STEPS}: marking the claim at the partition's end");
    write(&file, "claim marker", marker_at, &header::claim_marker())?;
    // mke2fs opens the partition exclusively itself.
    drop(file);

    // Whole 4 KiB blocks, short of the marker.
    let fs_bytes = marker_at / 4096 * 4096;
    log::info!("claim {partition}: step 2/{STEPS}: creating the ext4 filesystem ({} MiB)", fs_bytes >> 20);
    mkfs(&part_path, Some(fs_bytes)).map_err(|detail| ClaimError::Mkfs {
        disk: partition.into(),
        part: partition.into(),
        detail,
    })?;

    log::info!("claim {partition}: step 3/{STEPS}: flushing {partition} to the device");
    let file = open_exclusive(partition, &part_path)?;
    file.sync_all().map_err(|source| ClaimError::Write {
        disk: partition.into(),
        what: "filesystem (flush)",
        offset: 0,
        source,
    })?;

    log::info!("claim {partition}: step 4/{STEPS}: erasing the magic header and the claim marker");
    // The header sits in ext4's unused boot block (its first 1024 bytes), if mke2fs left it.
    if header::has_magic(&read(&file, 0, HEAD_LEN)?) {
        write(&file, "header erase", 0, &[0u8; HEAD_LEN])?;
    }
    write(&file, "claim marker erase", marker_at, &[0u8; header::CLAIM_MARKER_LEN])?;
    Ok(())
}

fn device_size(partition: &str, file: &File) -> Result<u64, ClaimError> {
    let mut size: u64 = 0;
    // SAFETY: the fd is an open block device and size is a valid out pointer.
    unsafe { block_device_size(file.as_raw_fd(), &mut size) }.map_err(|source| ClaimError::Ioctl {
        disk: partition.into(),
        what: "BLKGETSIZE64",
        source,
    })?;
    Ok(size)
}

/// The partition's place, from PID 1's own reads: its disk's first bytes (no header asking
/// for the whole disk; the end of a boot image there) and its start in sysfs.
fn check_place(partition: &str, disk: &str, paths: &Paths) -> Result<(), ClaimError> {
    let mut disk_head = Vec::new();
    File::open(paths.dev.join(disk))
        .and_then(|f| f.take(header::PROBE_LEN as u64).read_to_end(&mut disk_head))
        .map_err(|source| ClaimError::Read { disk: disk.into(), source })?;
    if header::has_magic(&disk_head) {
        return Err(ClaimError::DiskHasMagic { disk: partition.into(), parent: disk.into() });
    }
    if header::image_kind(&disk_head).is_image() {
        let start = partition_start(paths.sys_class_block, partition);
        match (header::image_bytes(&disk_head), start) {
            (Some(end), Some(start)) if start >= end => {}
            _ => return Err(ClaimError::InBootImage { disk: partition.into(), parent: disk.into() }),
        }
    }
    Ok(())
}

/// Where the partition starts on its disk, in bytes (sysfs counts 512-byte sectors).
fn partition_start(sys_class_block: &Path, partition: &str) -> Option<u64> {
    let s = std::fs::read_to_string(sys_class_block.join(partition).join("start")).ok()?;
    s.trim().parse::<u64>().ok().map(|sectors| sectors * 512)
}
