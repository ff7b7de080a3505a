//! What a device's first bytes say: the magic header that asks Lightwhale to claim it, the
//! image signature that forbids it, and a NoCloud seed's label (never claimed either). Pure.

/// What the user writes to byte 0 of a whole disk to have it claimed.
pub use lightwhale_types::constants::MAGIC;

/// How many bytes from the start of a device the checks need (covers the ISO 9660
/// volume descriptor at 32 KiB).
pub const PROBE_LEN: usize = 36 * 1024;

/// Offset of the ISO 9660 primary volume descriptor's "CD001" identifier.
const ISO9660_ID_OFFSET: usize = 32769;
/// Volume id (padded to 32 bytes) at offset 40 of the primary volume descriptor.
const ISO9660_VOLID_OFFSET: usize = 32768 + 40;
pub use lightwhale_types::constants::IMAGE_VOLUME_ID;

/// True when `head` (the first bytes of a device) begins with the magic header.
/// A trailing newline (from `echo`) or anything else after the magic is irrelevant.
pub fn has_magic(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// What a device's first bytes say about it being a boot medium.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ImageKind {
    #[default]
    NotAnImage,
    /// Any ISO 9660 filesystem: a CD or a hybrid image written to a stick.
    Iso9660 { volume_id: String },
}

impl ImageKind {
    pub fn is_image(&self) -> bool {
        !matches!(self, ImageKind::NotAnImage)
    }

    pub fn is_lightwhale(&self) -> bool {
        matches!(self, ImageKind::Iso9660 { volume_id } if volume_id == IMAGE_VOLUME_ID)
    }
}

/// How many bytes from the start of a device an ISO 9660 image covers, by its primary volume
/// descriptor (the volume space size times the logical block size); None when `head` is not
/// an image or the fields are missing.
pub fn image_bytes(head: &[u8]) -> Option<u64> {
    if !image_kind(head).is_image() {
        return None;
    }
    let pvd = 32768;
    let blocks = u32::from_le_bytes(head.get(pvd + 80..pvd + 84)?.try_into().ok()?) as u64;
    let block_size = u16::from_le_bytes(head.get(pvd + 128..pvd + 130)?.try_into().ok()?) as u64;
    Some(blocks * block_size)
}

/// The last bytes of a partition while the init claims it: mke2fs erases the header at the
/// partition's start before the filesystem is complete, so the claim marks the partition at
/// its end (outside the filesystem, which is made this much shorter) until it is done.
pub const CLAIM_MARKER_LEN: usize = 4096;

/// True when a partition's last [`CLAIM_MARKER_LEN`] bytes say a claim of it was cut short.
pub fn has_claim_marker(tail: &[u8]) -> bool {
    tail.len() == CLAIM_MARKER_LEN && tail.starts_with(MAGIC)
}

/// The marker as written: the magic, then zeros.
pub fn claim_marker() -> Vec<u8> {
    let mut m = vec![0u8; CLAIM_MARKER_LEN];
    m[..MAGIC.len()].copy_from_slice(MAGIC);
    m
}

pub fn image_kind(head: &[u8]) -> ImageKind {
    if head.get(ISO9660_ID_OFFSET..ISO9660_ID_OFFSET + 5) != Some(b"CD001") {
        return ImageKind::NotAnImage;
    }
    let volume_id = head
        .get(ISO9660_VOLID_OFFSET..ISO9660_VOLID_OFFSET + 32)
        .map(|b| String::from_utf8_lossy(b).trim_end_matches([' ', '\0']).to_string())
        .unwrap_or_default();
    ImageKind::Iso9660 { volume_id }
}

/// The volume label cloud-init's NoCloud datasource looks for (any case).
pub const SEED_LABEL: &str = "cidata";

/// The filesystem a seed was found on, which is also the type to mount it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeedFs {
    Iso9660,
    Vfat,
}

impl SeedFs {
    pub fn fstype(self) -> &'static str {
        match self {
            SeedFs::Iso9660 => "iso9660",
            SeedFs::Vfat => "vfat",
        }
    }
}

/// The volume label of a FAT12/16/32 filesystem, from its boot sector. Only fields after
/// byte 36 are read: a magic header written over byte 0 (27 bytes, plus `echo`'s newline)
/// must not hide a seed, or the seed could be claimed as persistence.
pub fn vfat_label(head: &[u8]) -> Option<String> {
    if head.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    let ext_sig = |at: usize| matches!(head.get(at), Some(0x28 | 0x29));
    // FAT12/16: extended boot record at 36, label at 43, type at 54; FAT32: at 64, 71, 82.
    let label_at = if ext_sig(38) && head.get(54..57) == Some(b"FAT") {
        43
    } else if ext_sig(66) && head.get(82..87) == Some(b"FAT32") {
        71
    } else {
        return None;
    };
    let raw = head.get(label_at..label_at + 11)?;
    let label = String::from_utf8_lossy(raw).trim_end_matches([' ', '\0']).to_string();
    (!label.is_empty() && label != "NO NAME").then_some(label)
}

/// The kind of seed a device's first bytes show, if its label is `cidata`.
pub fn seed_kind(head: &[u8]) -> Option<SeedFs> {
    if let ImageKind::Iso9660 { volume_id } = image_kind(head) {
        return volume_id.eq_ignore_ascii_case(SEED_LABEL).then_some(SeedFs::Iso9660);
    }
    vfat_label(head).filter(|l| l.eq_ignore_ascii_case(SEED_LABEL)).map(|_| SeedFs::Vfat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_with_and_without_newline() {
        assert!(has_magic(b"lightwhale-please-format-me\n\0\0\0"));
        assert!(has_magic(b"lightwhale-please-format-me"));
        // `printf` over an old MBR: whatever follows is old content.
        assert!(has_magic(b"lightwhale-please-format-me\xfa\x31\xc0"));
    }

    #[test]
    fn no_magic() {
        assert!(!has_magic(b""));
        assert!(!has_magic(b"lightwhale-please-format-m"));
        assert!(!has_magic(b"Lightwhale-please-format-me\n"));
        assert!(!has_magic(b" lightwhale-please-format-me\n"));
        assert!(!has_magic(&[0u8; 512]));
    }

    fn iso_head(volid: &str) -> Vec<u8> {
        let mut head = vec![0u8; PROBE_LEN];
        head[32768] = 1;
        head[32769..32774].copy_from_slice(b"CD001");
        let mut v = volid.as_bytes().to_vec();
        v.resize(32, b' ');
        head[32808..32840].copy_from_slice(&v);
        head
    }

    #[test]
    fn iso_is_an_image_even_with_magic() {
        let mut head = iso_head("LIGHTWHALE");
        head[..MAGIC.len()].copy_from_slice(MAGIC);
        assert!(has_magic(&head));
        let kind = image_kind(&head);
        assert!(kind.is_image());
        assert!(kind.is_lightwhale());
        assert_eq!(image_kind(&iso_head("debian-13")), ImageKind::Iso9660 { volume_id: "debian-13".into() });
    }

    #[test]
    fn an_images_size_comes_from_its_volume_descriptor() {
        let mut head = iso_head("LIGHTWHALE");
        head[32768 + 80..32768 + 84].copy_from_slice(&85_504u32.to_le_bytes());
        head[32768 + 128..32768 + 130].copy_from_slice(&2048u16.to_le_bytes());
        assert_eq!(image_bytes(&head), Some(175_112_192));
        assert_eq!(image_bytes(&vec![0u8; PROBE_LEN]), None);
    }

    #[test]
    fn the_claim_marker_is_the_magic_at_a_partitions_end() {
        assert!(has_claim_marker(&claim_marker()));
        assert!(!has_claim_marker(&vec![0u8; CLAIM_MARKER_LEN]));
        assert!(!has_claim_marker(MAGIC), "a short tail is no marker");
    }

    #[test]
    fn short_or_plain_devices_are_not_images() {
        assert_eq!(image_kind(&[0u8; 512]), ImageKind::NotAnImage);
        assert_eq!(image_kind(&vec![0u8; PROBE_LEN]), ImageKind::NotAnImage);
        let mut head = iso_head("X");
        head.truncate(32771);
        assert_eq!(image_kind(&head), ImageKind::NotAnImage);
    }

    /// The boot sector mkfs.fat writes for `mkfs.vfat -n cidata` (FAT12 on a small image).
    fn fat16_head(label: &[u8; 11]) -> Vec<u8> {
        let mut h = vec![0u8; PROBE_LEN];
        h[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        h[3..11].copy_from_slice(b"mkfs.fat");
        h[11..13].copy_from_slice(&512u16.to_le_bytes());
        h[38] = 0x29;
        h[43..54].copy_from_slice(label);
        h[54..62].copy_from_slice(b"FAT12   ");
        h[510] = 0x55;
        h[511] = 0xAA;
        h
    }

    fn fat32_head(label: &[u8; 11]) -> Vec<u8> {
        let mut h = vec![0u8; PROBE_LEN];
        h[66] = 0x29;
        h[71..82].copy_from_slice(label);
        h[82..90].copy_from_slice(b"FAT32   ");
        h[510] = 0x55;
        h[511] = 0xAA;
        h
    }

    #[test]
    fn vfat_labels_fat16_and_fat32() {
        assert_eq!(vfat_label(&fat16_head(b"cidata     ")).as_deref(), Some("cidata"));
        assert_eq!(vfat_label(&fat32_head(b"CIDATA     ")).as_deref(), Some("CIDATA"));
        assert_eq!(vfat_label(&fat16_head(b"NO NAME    ")), None);
        assert_eq!(vfat_label(&[0u8; 512]), None);
        assert_eq!(vfat_label(&[0u8; 100]), None);
        let mut no_sig = fat16_head(b"cidata     ");
        no_sig[511] = 0;
        assert_eq!(vfat_label(&no_sig), None);
    }

    #[test]
    fn seeds_by_label_in_any_case() {
        assert_eq!(seed_kind(&iso_head("cidata")), Some(SeedFs::Iso9660));
        assert_eq!(seed_kind(&iso_head("CIDATA")), Some(SeedFs::Iso9660));
        assert_eq!(seed_kind(&fat16_head(b"CIDATA     ")), Some(SeedFs::Vfat));
        assert_eq!(seed_kind(&iso_head("LIGHTWHALE")), None);
        assert_eq!(seed_kind(&iso_head("cidata2")), None);
        assert_eq!(seed_kind(&fat16_head(b"DATA       ")), None);
        assert_eq!(seed_kind(&[0u8; PROBE_LEN]), None);
    }

    #[test]
    fn the_magic_header_does_not_hide_a_vfat_seed() {
        let mut h = fat16_head(b"cidata     ");
        h[..28].copy_from_slice(b"lightwhale-please-format-me\n");
        assert_eq!(seed_kind(&h), Some(SeedFs::Vfat));
    }
}
