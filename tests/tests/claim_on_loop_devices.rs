//! The persistence scan, decision and claim on real block devices (loop devices).
//! Needs root: `cargo xtask test` runs these.

use lightwhale_host_tests::{blkid, host_mkfs, scan_reports, LoopDisk};
use lightwhale_init::cmdline::PersistenceMode;
use lightwhale_init::persist::{claim, decide, header, scan, Plan};
use std::path::Path;

const MIB: u64 = 1024 * 1024;
const MAGIC_ECHO: &[u8] = b"lightwhale-please-format-me\n";

fn paths() -> claim::Paths<'static> {
    claim::Paths { dev: Path::new("/dev"), sys_class_block: Path::new("/sys/class/block") }
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn header_disk_is_claimed_then_found_by_label() {
    let d = LoopDisk::new("claim", 128 * MIB, MAGIC_ECHO);
    let reports = scan_reports(&d);
    assert!(reports[0].magic);
    let decision = decide::decide(PersistenceMode::Auto, &reports);
    assert_eq!(decision.plan, Plan::Claim { disk: d.name.clone() });

    let part = claim::claim(&d.name, &paths(), &host_mkfs, [5u8; 32]).expect("claim");
    assert_eq!(part, scan::partition_name(&d.name, 1));
    let part_dev = Path::new("/dev").join(&part);
    assert_eq!(blkid(&part_dev, "LABEL"), "lightwhale-data");
    assert_eq!(blkid(&part_dev, "TYPE"), "ext4");
    assert_eq!(blkid(&d.dev(), "PTTYPE"), "gpt");
    // sfdisk, an independent reader, agrees on one Linux partition.
    let sf = std::process::Command::new("sfdisk").arg("--dump").arg(d.dev()).output().unwrap();
    let dump = String::from_utf8_lossy(&sf.stdout);
    assert_eq!(dump.lines().filter(|l| l.contains("type=0FC63DAF-8483-4772-8E79-3D69D8477DE4")).count(), 1, "{dump}");
    assert!(!header::has_magic(&d.read(0, 512)), "the header must be erased at the end");

    // The next boot mounts it instead of claiming again.
    let again = decide::decide(PersistenceMode::Auto, &scan_reports(&d));
    assert_eq!(again.plan, Plan::Mount { device: part.clone(), fsck: false });
    // And the claim code itself refuses a disk whose header is gone.
    let before = d.sha256();
    assert!(matches!(claim::claim(&d.name, &paths(), &host_mkfs, [6u8; 32]), Err(claim::ClaimError::NoMagic { .. })));
    assert_eq!(before, d.sha256());
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn disk_without_header_is_left_byte_for_byte() {
    let d = LoopDisk::new("plain", 96 * MIB, b"some old bootloader bytes");
    let before = d.sha256();
    let decision = decide::decide(PersistenceMode::Auto, &scan_reports(&d));
    assert_eq!(decision.plan, Plan::Tmpfs);
    let err = claim::claim(&d.name, &paths(), &host_mkfs, [1u8; 32]).unwrap_err();
    assert!(matches!(err, claim::ClaimError::NoMagic { .. }), "{err}");
    assert_eq!(before, d.sha256());
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn boot_image_with_forged_header_is_never_claimed() {
    let mut head = vec![0u8; 36 * 1024];
    head[..MAGIC_ECHO.len()].copy_from_slice(MAGIC_ECHO);
    head[32768] = 1;
    head[32769..32774].copy_from_slice(b"CD001");
    head[32808..32818].copy_from_slice(b"LIGHTWHALE");
    let d = LoopDisk::new("iso", 96 * MIB, &head);
    let before = d.sha256();
    assert_eq!(decide::decide(PersistenceMode::Auto, &scan_reports(&d)).plan, Plan::Tmpfs);
    assert!(matches!(claim::claim(&d.name, &paths(), &host_mkfs, [1u8; 32]), Err(claim::ClaimError::BootImage { .. })));
    assert_eq!(before, d.sha256());
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn interrupted_claim_is_claimed_again() {
    let d = LoopDisk::new("interrupted", 128 * MIB, MAGIC_ECHO);
    // A claim cut short after the partition table and the filesystem: mkfs "fails" right
    // after really formatting, as if the power went out before the header was erased.
    let cut = |p: &Path, bytes: Option<u64>| -> Result<(), String> {
        host_mkfs(p, bytes)?;
        Err("power cut".into())
    };
    assert!(matches!(claim::claim(&d.name, &paths(), &cut, [2u8; 32]), Err(claim::ClaimError::Mkfs { .. })));
    assert!(header::has_magic(&d.read(0, 512)), "the header must survive an interrupted claim");
    let reports = scan_reports(&d);
    assert!(
        reports.iter().any(|r| r.ext4.as_ref().is_some_and(|s| s.label == "lightwhale-data")),
        "the half-claimed filesystem is visible"
    );
    // The labelled partition of a disk that still has the header is not trusted.
    assert_eq!(decide::decide(PersistenceMode::Auto, &reports).plan, Plan::Claim { disk: d.name.clone() });
    let first_uuid = blkid(&Path::new("/dev").join(scan::partition_name(&d.name, 1)), "UUID");
    let part = claim::claim(&d.name, &paths(), &host_mkfs, [3u8; 32]).expect("second claim");
    let uuid = blkid(&Path::new("/dev").join(&part), "UUID");
    assert_ne!(first_uuid, uuid, "the half-made filesystem is replaced");
    assert_eq!(
        decide::decide(PersistenceMode::Auto, &scan_reports(&d)).plan,
        Plan::Mount { device: part, fsck: false }
    );
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn small_disk_is_refused_and_untouched() {
    let d = LoopDisk::new("small", 32 * MIB, MAGIC_ECHO);
    let before = d.sha256();
    let decision = decide::decide(PersistenceMode::Auto, &scan_reports(&d));
    assert_eq!(decision.plan, Plan::Tmpfs);
    assert!(decision.warnings.iter().any(|w| w.contains("64 MiB")), "{:?}", decision.warnings);
    assert_eq!(before, d.sha256());
}

#[test]
#[ignore = "needs root and loop devices: run with `cargo xtask test`"]
fn two_labelled_disks_pick_one_and_warn() {
    let a = LoopDisk::new("two-a", 96 * MIB, MAGIC_ECHO);
    let b = LoopDisk::new("two-b", 96 * MIB, MAGIC_ECHO);
    let pa = claim::claim(&a.name, &paths(), &host_mkfs, [7u8; 32]).unwrap();
    let pb = claim::claim(&b.name, &paths(), &host_mkfs, [8u8; 32]).unwrap();
    let mut reports = scan_reports(&a);
    reports.extend(scan_reports(&b));
    let d1 = decide::decide(PersistenceMode::Auto, &reports);
    reports.reverse();
    let d2 = decide::decide(PersistenceMode::Auto, &reports);
    assert_eq!(d1.plan, d2.plan, "the choice does not depend on scan order");
    match d1.plan {
        Plan::Mount { device, .. } => assert!(device == pa || device == pb),
        other => panic!("expected a mount, got {other:?}"),
    }
    assert_eq!(d1.warnings.len(), 1, "{:?}", d1.warnings);
}
