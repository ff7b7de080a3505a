//! Builds the partition table for a claimed disk: a protective MBR and a GPT (primary and
//! backup) with one Linux partition over the whole device.
//!
//! The protective MBR keeps the first 440 bytes of sector 0 as they are, so the magic
//! header survives until the claim is complete: that is what makes the claim crash-safe.

use crc32fast::Hasher;

/// Linux filesystem data, 0FC63DAF-8483-4772-8E79-3D69D8477DE4, in on-disk byte order.
pub const LINUX_FS_TYPE: [u8; 16] =
    guid_bytes(0x0FC63DAF, 0x8483, 0x4772, [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);
pub const PARTITION_NAME: &str = "lightwhale-data";
const ENTRY_COUNT: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const HEADER_SIZE: usize = 92;
const ALIGN_BYTES: u64 = 1024 * 1024;
/// MBR bytes before this offset are boot code and are left alone.
pub const MBR_BOOT_CODE_LEN: usize = 440;

/// Mixed-endian GUID layout used by GPT.
pub const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// Turns 16 random bytes into a version-4 GUID.
pub fn random_guid(mut bytes: [u8; 16]) -> [u8; 16] {
    bytes[7] = (bytes[7] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    bytes
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    #[error("sector size {0} is not supported (expected 512 or 4096)")]
    SectorSize(u64),
    #[error("device of {0} bytes is too small for a partition table and a 1 MiB-aligned partition")]
    TooSmall(u64),
}

/// One write the claim performs: `data` at byte `offset` of the whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub offset: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub sector_size: u64,
    pub first_lba: u64,
    pub last_lba: u64,
    /// Writes in the order they must happen: tables first, protective MBR last.
    pub writes: Vec<Write>,
}

impl Layout {
    pub fn partition_bytes(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * self.sector_size
    }
}

/// Computes the partition table for a disk of `disk_bytes` with logical `sector_size`.
/// `sector0` is the disk's current first sector; its boot-code area is preserved.
pub fn layout(
    disk_bytes: u64,
    sector_size: u64,
    sector0: &[u8],
    disk_guid: [u8; 16],
    part_guid: [u8; 16],
) -> Result<Layout, GptError> {
    if sector_size != 512 && sector_size != 4096 {
        return Err(GptError::SectorSize(sector_size));
    }
    let total = disk_bytes / sector_size;
    let entry_sectors = (ENTRY_COUNT * ENTRY_SIZE).div_ceil(sector_size);
    let align = ALIGN_BYTES / sector_size;
    // LBA0 MBR, LBA1 header, then the entries; the same at the end for the backup.
    let min_sectors = 2 + 2 * entry_sectors + 2 * align;
    if total < min_sectors {
        return Err(GptError::TooSmall(disk_bytes));
    }
    let last_lba_disk = total - 1;
    let first_usable = 2 + entry_sectors;
    let last_usable = last_lba_disk - 1 - entry_sectors;
    let first = first_usable.div_ceil(align) * align;
    let last = (last_usable + 1) / align * align - 1;
    if last <= first {
        return Err(GptError::TooSmall(disk_bytes));
    }

    let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    {
        let e = &mut entries[..ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&LINUX_FS_TYPE);
        e[16..32].copy_from_slice(&part_guid);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        for (i, unit) in PARTITION_NAME.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);

    let header = |current: u64, backup: u64, entries_lba: u64| {
        let mut h = vec![0u8; sector_size as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRY_COUNT as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..HEADER_SIZE]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let backup_entries_lba = last_lba_disk - entry_sectors;

    let mut mbr = vec![0u8; sector_size as usize];
    let keep = sector0.len().min(sector_size as usize);
    mbr[..keep].copy_from_slice(&sector0[..keep]);
    mbr[440..446].fill(0);
    let p = &mut mbr[446..462];
    p.fill(0);
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    p[12..16].copy_from_slice(&(u32::try_from(total - 1).unwrap_or(u32::MAX)).to_le_bytes());
    mbr[462..510].fill(0);
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    let at = |lba: u64| lba * sector_size;
    Ok(Layout {
        sector_size,
        first_lba: first,
        last_lba: last,
        writes: vec![
            Write { offset: at(backup_entries_lba), data: entries.clone() },
            Write { offset: at(last_lba_disk), data: header(last_lba_disk, 1, backup_entries_lba) },
            Write { offset: at(2), data: entries },
            Write { offset: at(1), data: header(1, last_lba_disk, 2) },
            Write { offset: 0, data: mbr },
        ],
    })
}

fn crc32(b: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(b);
    h.finalize()
}

/// A partition read back from a primary GPT (used to verify what was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// Parses the primary GPT from the first bytes of a disk; checks both CRCs. Every field is
/// untrusted: an entry size under 128 bytes (the UEFI minimum), or an entry area that
/// overflows or lies beyond `head`, is no table at all. (The property tests in
/// init/tests/fuzz_parsers.rs found the overflow and the short entries.)
pub fn parse_primary(head: &[u8], sector_size: usize) -> Option<Vec<Partition>> {
    let h = head.get(sector_size..sector_size.checked_add(HEADER_SIZE)?)?;
    if &h[0..8] != b"EFI PART" {
        return None;
    }
    let mut hc = h.to_vec();
    let stored = u32::from_le_bytes(hc[16..20].try_into().ok()?);
    hc[16..20].fill(0);
    if crc32(&hc) != stored {
        return None;
    }
    let entries_lba = usize::try_from(u64::from_le_bytes(h[72..80].try_into().ok()?)).ok()?;
    let count = u32::from_le_bytes(h[80..84].try_into().ok()?) as usize;
    let size = u32::from_le_bytes(h[84..88].try_into().ok()?) as usize;
    if size < ENTRY_SIZE as usize {
        return None;
    }
    let start = entries_lba.checked_mul(sector_size)?;
    let entries = head.get(start..start.checked_add(count.checked_mul(size)?)?)?;
    if crc32(entries) != u32::from_le_bytes(h[88..92].try_into().ok()?) {
        return None;
    }
    let le64 = |b: &[u8]| b.try_into().map(u64::from_le_bytes).unwrap_or_default();
    Some(
        entries
            .chunks_exact(size)
            .filter(|e| e[0..16] != [0u8; 16])
            .map(|e| {
                let units: Vec<u16> =
                    e[56..128].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
                Partition {
                    type_guid: e[0..16].try_into().unwrap_or_default(),
                    first_lba: le64(&e[32..40]),
                    last_lba: le64(&e[40..48]),
                    name: String::from_utf16_lossy(&units),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::header;

    fn apply(disk: &mut [u8], l: &Layout) {
        for w in &l.writes {
            disk[w.offset as usize..w.offset as usize + w.data.len()].copy_from_slice(&w.data);
        }
    }

    #[test]
    fn linux_type_guid_encoding() {
        assert_eq!(LINUX_FS_TYPE[..4], [0xAF, 0x3D, 0xC6, 0x0F]);
        assert_eq!(LINUX_FS_TYPE[8..], [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);
    }

    #[test]
    fn one_aligned_partition_and_magic_survives() {
        let size = 64 * 1024 * 1024;
        let mut disk = vec![0u8; size];
        disk[..28].copy_from_slice(b"lightwhale-please-format-me\n");
        let l = layout(size as u64, 512, &disk[..512], random_guid([7; 16]), random_guid([9; 16])).unwrap();
        apply(&mut disk, &l);
        assert!(header::has_magic(&disk), "the header must stay until the claim completes");
        assert_eq!(disk[450], 0xEE);
        assert_eq!(&disk[510..512], &[0x55, 0xAA]);
        let parts = parse_primary(&disk, 512).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].first_lba, 2048);
        assert_eq!(parts[0].type_guid, LINUX_FS_TYPE);
        assert_eq!(parts[0].name, PARTITION_NAME);
        assert_eq!((parts[0].last_lba + 1) % 2048, 0);
        assert!(parts[0].last_lba < (size / 512) as u64 - 33);
        // The backup header sits in the last sector and points back at LBA 1.
        let last = &disk[size - 512..];
        assert_eq!(&last[..8], b"EFI PART");
        assert_eq!(u64::from_le_bytes(last[32..40].try_into().unwrap()), 1);
    }

    #[test]
    fn four_k_sectors() {
        let size = 128 * 1024 * 1024u64;
        let l = layout(size, 4096, &[0u8; 4096], [1; 16], [2; 16]).unwrap();
        assert_eq!(l.first_lba, 256);
        assert_eq!(l.writes.last().unwrap().data.len(), 4096);
        let mut disk = vec![0u8; size as usize];
        apply(&mut disk, &l);
        let parts = parse_primary(&disk, 4096).unwrap();
        assert_eq!(parts[0].first_lba, 256);
    }

    #[test]
    fn refuses_tiny_and_odd_sectors() {
        assert_eq!(layout(1024 * 1024, 512, &[0; 512], [0; 16], [0; 16]), Err(GptError::TooSmall(1024 * 1024)));
        assert_eq!(layout(1 << 30, 520, &[0; 520], [0; 16], [0; 16]), Err(GptError::SectorSize(520)));
    }

    #[test]
    fn corrupted_table_is_rejected() {
        let size = 8 * 1024 * 1024;
        let mut disk = vec![0u8; size];
        let l = layout(size as u64, 512, &[0; 512], [3; 16], [4; 16]).unwrap();
        apply(&mut disk, &l);
        disk[1024 + 32] ^= 1;
        assert!(parse_primary(&disk, 512).is_none());
    }

    #[test]
    fn hostile_headers_found_by_the_property_tests_are_rejected() {
        // Checksummed headers whose entry area overflows, or whose entries are too short.
        let mut h = vec![0u8; 1024];
        h[512..520].copy_from_slice(b"EFI PART");
        let set = |h: &mut Vec<u8>, lba: u64, count: u32, size: u32| {
            h[512 + 72..512 + 80].copy_from_slice(&lba.to_le_bytes());
            h[512 + 80..512 + 84].copy_from_slice(&count.to_le_bytes());
            h[512 + 84..512 + 88].copy_from_slice(&size.to_le_bytes());
            h[512 + 88..512 + 92].copy_from_slice(&crc32(&[]).to_le_bytes());
            h[512 + 16..512 + 20].fill(0);
            let c = crc32(&h[512..512 + HEADER_SIZE]);
            h[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
        };
        set(&mut h, u64::MAX / 2, 1, 128);
        assert_eq!(parse_primary(&h, 512), None);
        set(&mut h, 1, 0, 0);
        assert_eq!(parse_primary(&h, 512), None);
        set(&mut h, 1, 0, 16);
        assert_eq!(parse_primary(&h, 512), None);
    }

    #[test]
    fn guid_version_bits() {
        let g = random_guid([0xff; 16]);
        assert_eq!(g[7] >> 4, 4);
        assert_eq!(g[8] >> 6, 2);
    }
}
