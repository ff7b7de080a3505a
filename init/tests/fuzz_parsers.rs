//! Property tests over arbitrary bytes for every parser that reads untrusted input: the
//! magic header and ISO 9660 marker readers, the ext4 superblock, the GPT reader and the
//! decoder of the device probe's answer. None may panic or read out of range, whatever the
//! bytes. Structured generators (a GPT header with valid checksums and arbitrary fields, a
//! superblock with the right magic) get past the first checks to the arithmetic behind them.
//!
//! A short, bounded run is part of `cargo test` (PROPTEST_CASES raises it).

use lightwhale_init::persist::{ext4, gpt, header, scan, DeviceReport};
use lightwhale_init::sandbox;
use proptest::prelude::*;

/// `cases` unless PROPTEST_CASES says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn crc(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

/// A primary GPT header at LBA 1 with valid CRCs over whatever entry area its fields name
/// (as far as `disk` reaches), and arbitrary entries_lba, count and entry size.
fn gpt_disk(sector: usize, entries_lba: u64, count: u32, size: u32, fill: u8, len: usize) -> Vec<u8> {
    let mut disk = vec![fill; len.max(sector + 92)];
    let h = sector;
    disk[h..h + 8].copy_from_slice(b"EFI PART");
    disk[h + 72..h + 80].copy_from_slice(&entries_lba.to_le_bytes());
    disk[h + 80..h + 84].copy_from_slice(&count.to_le_bytes());
    disk[h + 84..h + 88].copy_from_slice(&size.to_le_bytes());
    let start = (entries_lba as usize).saturating_mul(sector);
    let end = start.saturating_add((count as usize).saturating_mul(size as usize));
    let entries_crc = disk.get(start..end).map(crc).unwrap_or(0);
    disk[h + 88..h + 92].copy_from_slice(&entries_crc.to_le_bytes());
    disk[h + 16..h + 20].fill(0);
    let header_crc = crc(&disk[h..h + 92]);
    disk[h + 16..h + 20].copy_from_slice(&header_crc.to_le_bytes());
    disk
}

proptest! {
    // Whole probe-sized buffers are slow to generate: fewer cases.
    #![proptest_config(config(200))]

    #[test]
    fn header_and_image_markers_never_panic(head in proptest::collection::vec(any::<u8>(), 0..40_000)) {
        let _ = header::has_magic(&head);
        let kind = header::image_kind(&head);
        let _ = kind.is_lightwhale();
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn iso_marker_with_arbitrary_volume_id(volid in proptest::collection::vec(any::<u8>(), 0..40), cut in 32_700usize..33_000) {
        let mut head = vec![0u8; header::PROBE_LEN];
        head[32769..32774].copy_from_slice(b"CD001");
        let n = volid.len().min(32);
        head[32808..32808 + n].copy_from_slice(&volid[..n]);
        head.truncate(cut);
        let _ = header::image_kind(&head);
    }

    #[test]
    fn ext4_superblock_never_panics(mut head in proptest::collection::vec(any::<u8>(), 0..4096), magic in any::<bool>()) {
        if magic && head.len() > 1024 + 0x3A {
            head[1024 + 0x38] = 0x53;
            head[1024 + 0x39] = 0xEF;
        }
        if let Some(sb) = ext4::parse(&head) {
            let _ = (sb.uuid_string(), sb.needs_fsck());
        }
    }

    #[test]
    fn gpt_reader_never_panics_on_random_bytes(disk in proptest::collection::vec(any::<u8>(), 0..20_000), four_k in any::<bool>()) {
        let _ = gpt::parse_primary(&disk, if four_k { 4096 } else { 512 });
    }

    #[test]
    fn gpt_reader_never_panics_on_checksummed_headers(
        entries_lba in prop_oneof![0u64..8, any::<u64>()],
        count in prop_oneof![0u32..300, any::<u32>()],
        size in prop_oneof![0u32..200, any::<u32>()],
        fill in any::<u8>(),
        len in 512usize..40_000,
        four_k in any::<bool>(),
    ) {
        let sector = if four_k { 4096 } else { 512 };
        let disk = gpt_disk(sector, entries_lba, count, size, fill, len);
        let _ = gpt::parse_primary(&disk, sector);
    }

    #[test]
    fn probe_answer_decoder_never_panics(text in ".{0,2000}") {
        let _ = sandbox::decode::<Vec<DeviceReport>>("fuzz", &text);
    }

    #[test]
    fn probe_answer_decoder_on_mangled_real_answers(cut in 0usize..400, flip in 0usize..400, byte in any::<u8>()) {
        let dev = scan::BlockDev { name: "sda".into(), size_bytes: 1 << 30, ..Default::default() };
        let mut head = ext4::craft("lightwhale-data", [9; 16], 1, 0, 5);
        head.resize(header::PROBE_LEN, 0);
        let answer: Result<Vec<DeviceReport>, String> = Ok(vec![scan::report(&dev, &head, &[])]);
        let mut text = ron::to_string(&answer).unwrap().into_bytes();
        if flip < text.len() {
            text[flip] = byte;
        }
        text.truncate(cut.max(1).min(text.len()));
        let text = String::from_utf8_lossy(&text);
        if let Ok(reports) = sandbox::decode::<Vec<DeviceReport>>("fuzz", &text) {
            let _ = scan::validate(&reports, &["sda".to_string()]);
        }
    }
}

#[test]
fn a_valid_table_still_parses_through_the_generator() {
    // The generator makes what the parser accepts, or the GPT properties test nothing.
    let disk = gpt_disk(512, 2, 128, 128, 0, 512 * 40);
    assert_eq!(gpt::parse_primary(&disk, 512).map(|p| p.len()), Some(0));
}
