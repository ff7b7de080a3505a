//! The system image: a squashfs that arrived in RAM with the kernel (second initrd),
//! checked against the SHA-256 the builder recorded before it is mounted.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const SQUASHFS: &str = "/lightwhale/rootfs.squashfs";
pub const SQUASHFS_SHA256: &str = "/lightwhale/rootfs.squashfs.sha256";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the system image {path} is missing: the boot loader did not load rootfs.img as a second initrd ({source})"
    )]
    Missing { path: PathBuf, source: std::io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} does not hold a SHA-256 in hex")]
    BadChecksumFile { path: PathBuf },
    #[error(
        "the system image is corrupt: SHA-256 {actual}, expected {expected}. \
         The boot medium is damaged or was written incompletely: write the ISO to it again"
    )]
    Corrupt { expected: String, actual: String },
}

/// Parses the first word of a `sha256sum`-style line.
pub fn parse_checksum(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    (word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit())).then(|| word.to_ascii_lowercase())
}

pub fn sha256_hex(reader: &mut dyn Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Returns the image size in bytes when it matches its checksum.
pub fn verify(image: &Path, checksum_file: &Path) -> Result<u64, ImageError> {
    let text = std::fs::read_to_string(checksum_file)
        .map_err(|source| ImageError::Missing { path: checksum_file.into(), source })?;
    let expected = parse_checksum(&text).ok_or_else(|| ImageError::BadChecksumFile { path: checksum_file.into() })?;
    let mut f = std::fs::File::open(image).map_err(|source| ImageError::Missing { path: image.into(), source })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let actual = sha256_hex(&mut f).map_err(|source| ImageError::Read { path: image.into(), source })?;
    if actual != expected {
        return Err(ImageError::Corrupt { expected, actual });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_file_formats() {
        let h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_checksum(&format!("{h}  rootfs.squashfs\n")).as_deref(), Some(h));
        assert_eq!(parse_checksum(&h.to_uppercase()).as_deref(), Some(h));
        assert_eq!(parse_checksum("abc"), None);
        assert_eq!(parse_checksum(""), None);
    }

    #[test]
    fn flipped_bit_is_reported_as_corrupt() {
        let dir = std::env::temp_dir().join(format!("lw-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("rootfs.squashfs");
        let sum = dir.join("rootfs.squashfs.sha256");
        let mut data = vec![7u8; 3 << 20];
        std::fs::write(&img, &data).unwrap();
        std::fs::write(&sum, format!("{}  rootfs.squashfs\n", sha256_hex(&mut &data[..]).unwrap())).unwrap();
        assert_eq!(verify(&img, &sum).unwrap(), 3 << 20);
        data[2 << 20] ^= 0x10;
        std::fs::write(&img, &data).unwrap();
        let err = verify(&img, &sum).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("write the ISO to it again"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
