//! The magic header that asks Lightwhale to claim a disk, and the image signature that
//! forbids it. Pure functions over the first bytes of a device.

/// What the user writes to byte 0 of a whole disk to have it claimed.
pub const MAGIC: &[u8] = b"lightwhale-please-format-me";

/// How many bytes from the start of a device the checks need (covers the ISO 9660
/// volume descriptor at 32 KiB).
pub const PROBE_LEN: usize = 36 * 1024;

/// Offset of the ISO 9660 primary volume descriptor's "CD001" identifier.
const ISO9660_ID_OFFSET: usize = 32769;
/// Volume id (padded to 32 bytes) at offset 40 of the primary volume descriptor.
const ISO9660_VOLID_OFFSET: usize = 32768 + 40;
pub const IMAGE_VOLUME_ID: &str = "LIGHTWHALE";

/// True when `head` (the first bytes of a device) begins with the magic header.
/// A trailing newline (from `echo`) or anything else after the magic is irrelevant.
pub fn has_magic(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// What a device's first bytes say about it being a boot medium.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ImageKind {
    NotAnImage,
    /// Any ISO 9660 filesystem: a CD or a hybrid image written to a stick.
    Iso9660 {
        volume_id: String,
    },
}

impl ImageKind {
    pub fn is_image(&self) -> bool {
        !matches!(self, ImageKind::NotAnImage)
    }

    pub fn is_lightwhale(&self) -> bool {
        matches!(self, ImageKind::Iso9660 { volume_id } if volume_id == IMAGE_VOLUME_ID)
    }
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
    fn short_or_plain_devices_are_not_images() {
        assert_eq!(image_kind(&[0u8; 512]), ImageKind::NotAnImage);
        assert_eq!(image_kind(&vec![0u8; PROBE_LEN]), ImageKind::NotAnImage);
        let mut head = iso_head("X");
        head.truncate(32771);
        assert_eq!(image_kind(&head), ImageKind::NotAnImage);
    }
}
