//! Just enough of the ext2/3/4 superblock to find the persistence filesystem and decide
//! whether it needs a check before mounting. Pure: works on bytes read by the caller.

/// The superblock starts 1024 bytes into the filesystem and is 1024 bytes long.
pub const SUPERBLOCK_OFFSET: usize = 1024;
pub const SUPERBLOCK_END: usize = 2048;

const MAGIC: u16 = 0xEF53;
const STATE_VALID: u16 = 0x0001;
const STATE_ERROR: u16 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Superblock {
    pub label: String,
    pub uuid: [u8; 16],
    /// Cleanly unmounted and no errors recorded.
    pub clean: bool,
    /// The journal has transactions that must be replayed.
    pub needs_recovery: bool,
    /// Last mount time (seconds since the epoch), used to pick between two candidates.
    pub mount_time: u32,
    pub write_time: u32,
}

impl Superblock {
    pub fn uuid_string(&self) -> String {
        let u = &self.uuid;
        format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]
        )
    }

    /// e2fsck in preen mode first, as the issue asks, when the last unmount was not clean.
    pub fn needs_fsck(&self) -> bool {
        !self.clean || self.needs_recovery
    }
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Parses the superblock from the first bytes of a device or partition.
/// Returns None when the bytes are too short or hold no ext2/3/4 filesystem.
pub fn parse(head: &[u8]) -> Option<Superblock> {
    let sb = head.get(SUPERBLOCK_OFFSET..SUPERBLOCK_END)?;
    if le16(sb, 0x38) != MAGIC {
        return None;
    }
    let label_bytes = &sb[0x78..0x88];
    let end = label_bytes.iter().position(|&c| c == 0).unwrap_or(label_bytes.len());
    let label = String::from_utf8_lossy(&label_bytes[..end]).into_owned();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[0x68..0x78]);
    let state = le16(sb, 0x3A);
    Some(Superblock {
        label,
        uuid,
        clean: state & STATE_VALID != 0 && state & STATE_ERROR == 0,
        needs_recovery: le32(sb, 0x60) & INCOMPAT_RECOVER != 0,
        mount_time: le32(sb, 0x2C),
        write_time: le32(sb, 0x30),
    })
}

/// Builds a superblock image for tests elsewhere in the crate (and the host tests).
#[doc(hidden)]
pub fn craft(label: &str, uuid: [u8; 16], state: u16, incompat: u32, mount_time: u32) -> Vec<u8> {
    let mut head = vec![0u8; SUPERBLOCK_END];
    let sb = &mut head[SUPERBLOCK_OFFSET..];
    sb[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
    sb[0x3A..0x3C].copy_from_slice(&state.to_le_bytes());
    sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
    sb[0x2C..0x30].copy_from_slice(&mount_time.to_le_bytes());
    sb[0x68..0x78].copy_from_slice(&uuid);
    let l = label.as_bytes();
    sb[0x78..0x78 + l.len().min(16)].copy_from_slice(&l[..l.len().min(16)]);
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_uuid_and_state() {
        let sb = parse(&craft("lightwhale-data", [0xab; 16], 1, 0x2c2, 1700000000)).unwrap();
        assert_eq!(sb.label, "lightwhale-data");
        assert_eq!(sb.uuid_string(), "abababab-abab-abab-abab-abababababab");
        assert!(sb.clean);
        assert!(!sb.needs_recovery);
        assert!(!sb.needs_fsck());
        assert_eq!(sb.mount_time, 1700000000);
    }

    #[test]
    fn dirty_or_recovering_needs_fsck() {
        assert!(parse(&craft("x", [0; 16], 0, 0, 0)).unwrap().needs_fsck());
        assert!(parse(&craft("x", [0; 16], 3, 0, 0)).unwrap().needs_fsck());
        assert!(parse(&craft("x", [0; 16], 1, INCOMPAT_RECOVER, 0)).unwrap().needs_fsck());
    }

    #[test]
    fn full_sixteen_byte_label() {
        let sb = parse(&craft("0123456789abcdef", [0; 16], 1, 0, 0)).unwrap();
        assert_eq!(sb.label, "0123456789abcdef");
    }

    #[test]
    fn rejects_truncated_and_foreign() {
        let good = craft("lightwhale-data", [1; 16], 1, 0, 0);
        assert!(parse(&good[..2047]).is_none());
        assert!(parse(&good[..1024]).is_none());
        let mut wrong_magic = good.clone();
        wrong_magic[1024 + 0x38] = 0x54;
        assert!(parse(&wrong_magic).is_none());
        assert!(parse(&[0u8; 4096]).is_none());
    }
}
