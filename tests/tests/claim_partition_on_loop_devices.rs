//! A partition claimed alone, on real block devices (loop devices with a DOS partition
//! table): only the opted-in partition is written, on a plain disk and on a disk that holds
//! a boot image from sector 0 (a one-disk machine). Needs root: `cargo xtask test` runs these.

use lightwhale_host_tests::{blkid, host_mkfs, mbr, scan_reports, LoopDisk};
use lightwhale_init::cmdline::PersistenceMode;
use lightwhale_init::persist::{claim, claim_partition, decide, header, scan, Plan};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MIB: u64 = 1024 * 1024;
const SECTORS_PER_MIB: u32 = 2048;
const MAGIC_PRINTF: &[u8] = b"lightwhale-please-format-me";

fn paths() -> claim::Paths<'static> {
    claim::Paths { dev: Path::new("/dev"), sys_class_block: Path::new("/sys/class/block") }
}

/// Writes `data` at `offset` of the disk through its loop device, as `dd` would.
fn write_at(d: &LoopDisk, offset: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(d.dev()).unwrap();
    f.write_all_at(data, offset).unwrap();
    f.sync_all().unwrap();
}

/// A disk with the table written and its partitions visible.
fn partitioned(tag: &str, bytes: u64, head: &[u8], parts: &[(u32, u32)]) -> LoopDisk {
    let mut first = head.to_vec();
    first.resize(first.len().max(512), 0);
    first[446..512].copy_from_slice(&mbr(parts)[446..512]);
    let d = LoopDisk::new(tag, bytes, &first);
    let status = std::process::Command::new("partx").args(["--update"]).arg(d.dev()).status();
    assert!(status.is_ok_and(|s| s.success()), "partx --update");
    for n in 1..=parts.len() {
        let p = scan::partition_name(&d.name, n as u32);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !Path::new("/dev").join(&p).exists() {
            assert!(std::time::Instant::now() < deadline, "{p} did not appear");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    d
}

fn bytes(d: &LoopDisk, offset: u64, len: usize) -> Vec<u8> {
    d.read(offset, len)
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn a_partition_with_the_header_is_claimed_alone_and_mounted_next_time() {
    // p1: 1..65 MiB, someone's data; p2: 65..193 MiB, opted in; 193..256 MiB unpartitioned.
    let p1 = (SECTORS_PER_MIB, 64 * SECTORS_PER_MIB);
    let p2 = (65 * SECTORS_PER_MIB, 128 * SECTORS_PER_MIB);
    let d = partitioned("part", 256 * MIB, &[], &[p1, p2]);
    write_at(&d, MIB, &vec![0x5a; 64 * MIB as usize]);
    write_at(&d, 65 * MIB, MAGIC_PRINTF);
    write_at(&d, 193 * MIB, b"bytes after the last partition");
    let table = d.read(0, 512);
    let (before_p1, before_tail) = (bytes(&d, MIB, 64 * MIB as usize), bytes(&d, 193 * MIB, 63 * MIB as usize));

    let part2 = scan::partition_name(&d.name, 2);
    let plan = decide::decide(PersistenceMode::Auto, &scan_reports(&d)).plan;
    assert_eq!(plan, Plan::ClaimPartition { partition: part2.clone(), disk: d.name.clone() });
    claim_partition::claim_partition(&part2, &d.name, &paths(), &host_mkfs).expect("claim");

    let dev2 = Path::new("/dev").join(&part2);
    assert_eq!(blkid(&dev2, "LABEL"), "lightwhale-data");
    assert_eq!(blkid(&dev2, "TYPE"), "ext4");
    assert_eq!(d.read(0, 512), table, "the partition table is unchanged");
    assert_eq!(bytes(&d, MIB, 64 * MIB as usize), before_p1, "the other partition is unchanged");
    assert_eq!(bytes(&d, 193 * MIB, 63 * MIB as usize), before_tail, "the space after it is unchanged");
    let marker_at = 193 * MIB - header::CLAIM_MARKER_LEN as u64;
    assert!(!header::has_claim_marker(&d.read(marker_at, header::CLAIM_MARKER_LEN)), "the marker is erased");
    assert!(!header::has_magic(&d.read(65 * MIB, 512)), "the header is erased");
    // e2fsck, an independent reader, finds the filesystem whole and short of the marker.
    let fsck = std::process::Command::new("e2fsck").args(["-fn"]).arg(&dev2).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));

    let again = decide::decide(PersistenceMode::Auto, &scan_reports(&d));
    assert_eq!(again.plan, Plan::Mount { device: part2.clone(), fsck: false });
    // The claim code itself refuses a partition that no longer asks for it.
    let before = d.sha256();
    let err = claim_partition::claim_partition(&part2, &d.name, &paths(), &host_mkfs).unwrap_err();
    assert!(matches!(err, claim::ClaimError::NoMagic { .. }), "{err}");
    assert_eq!(before, d.sha256());
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn a_partitions_claim_cut_short_is_claimed_again() {
    let d = partitioned("part-cut", 160 * MIB, &[], &[(SECTORS_PER_MIB, 128 * SECTORS_PER_MIB)]);
    write_at(&d, MIB, MAGIC_PRINTF);
    let part = scan::partition_name(&d.name, 1);
    // The power goes out right after mke2fs finished: the header is gone with the
    // partition's first sectors, the marker at its end says the claim is not done.
    let cut = |p: &Path, bytes: Option<u64>| -> Result<(), String> {
        host_mkfs(p, bytes)?;
        Err("power cut".into())
    };
    let err = claim_partition::claim_partition(&part, &d.name, &paths(), &cut).unwrap_err();
    assert!(matches!(err, claim::ClaimError::Mkfs { .. }), "{err}");
    let reports = scan_reports(&d);
    let r = reports.iter().find(|r| r.name == part).unwrap();
    assert!(!r.magic && r.claim_marker, "{r:?}");
    assert_eq!(
        r.ext4.as_ref().map(|s| s.label.as_str()),
        Some("lightwhale-data"),
        "the half-claimed filesystem is visible"
    );
    let first_uuid = blkid(&Path::new("/dev").join(&part), "UUID");
    assert_eq!(
        decide::decide(PersistenceMode::Auto, &reports).plan,
        Plan::ClaimPartition { partition: part.clone(), disk: d.name.clone() },
        "a labelled partition with the marker is claimed again, not mounted"
    );
    claim_partition::claim_partition(&part, &d.name, &paths(), &host_mkfs).expect("second claim");
    assert_ne!(blkid(&Path::new("/dev").join(&part), "UUID"), first_uuid, "the half-made filesystem is replaced");
    assert_eq!(
        decide::decide(PersistenceMode::Auto, &scan_reports(&d)).plan,
        Plan::Mount { device: part, fsck: false }
    );
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn on_a_one_disk_machine_nothing_of_the_image_is_written() {
    // A hybrid image from sector 0 (64 MiB by its volume descriptor); partition 1 inside the
    // image (where its ESP is) with a forged header; partition 2 after it, opted in. (The
    // hybrid MBR's entry covering the whole image is left out: partx refuses to add a
    // partition inside another; the decision's unit tests have it.)
    let mut head = vec![0u8; 36 * 1024];
    head[32768] = 1;
    head[32769..32774].copy_from_slice(b"CD001");
    head[32808..32818].copy_from_slice(b"LIGHTWHALE");
    head[32768 + 80..32768 + 84].copy_from_slice(&(32 * 1024u32).to_le_bytes());
    head[32768 + 128..32768 + 130].copy_from_slice(&2048u16.to_le_bytes());
    let inside = (32 * SECTORS_PER_MIB, 16 * SECTORS_PER_MIB);
    let after = (64 * SECTORS_PER_MIB, 128 * SECTORS_PER_MIB);
    let d = partitioned("one-disk", 224 * MIB, &head, &[inside, after]);
    write_at(&d, 32 * MIB, MAGIC_PRINTF);
    write_at(&d, 64 * MIB, MAGIC_PRINTF);
    let before_image = bytes(&d, 0, 64 * MIB as usize);

    let (p2, p3) = (scan::partition_name(&d.name, 1), scan::partition_name(&d.name, 2));
    let decision = decide::decide(PersistenceMode::Auto, &scan_reports(&d));
    assert_eq!(decision.plan, Plan::ClaimPartition { partition: p3.clone(), disk: d.name.clone() });
    assert!(
        decision.notes.iter().any(|n| n.starts_with(&p2) && n.contains("within the boot image")),
        "{:?}",
        decision.notes
    );
    // Asked directly, the claim code refuses the partition inside the image on its own reads.
    let err = claim_partition::claim_partition(&p2, &d.name, &paths(), &host_mkfs).unwrap_err();
    assert!(matches!(err, claim::ClaimError::InBootImage { .. }), "{err}");
    assert_eq!(bytes(&d, 0, 64 * MIB as usize), before_image);

    claim_partition::claim_partition(&p3, &d.name, &paths(), &host_mkfs).expect("claim");
    assert_eq!(bytes(&d, 0, 64 * MIB as usize), before_image, "the image is byte for byte as it was");
    assert_eq!(blkid(&Path::new("/dev").join(&p3), "LABEL"), "lightwhale-data");
    assert_eq!(decide::decide(PersistenceMode::Auto, &scan_reports(&d)).plan, Plan::Mount { device: p3, fsck: false });
}
