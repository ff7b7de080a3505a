//! The system image: a squashfs that arrived in RAM with the kernel (second initrd),
//! checked against the SHA-256 the builder recorded before it is mounted.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const SQUASHFS: &str = "/lightwhale/rootfs.squashfs";
pub const SQUASHFS_SHA256: &str = "/lightwhale/rootfs.squashfs.sha256";
/// SHA-256 of each fixed-size chunk, so every CPU can check part of the image at once.
pub const SQUASHFS_CHUNKS: &str = "/lightwhale/rootfs.squashfs.chunks";
pub const CHUNK_SIZE: u64 = 8 * 1024 * 1024;

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
    #[error("{path} is not a valid chunk list: {problem}")]
    BadChunkList { path: PathBuf, problem: String },
    #[error(
        "the system image is incomplete: {have_mib} of at least {want_mib} MiB arrived. This machine has \
         {ram_mib} MiB of RAM; unpacking the image needs about three times its size, so with less than \
         {need_mib} MiB add RAM. Otherwise the boot medium is damaged: write the ISO to it again"
    )]
    Incomplete { have_mib: u64, want_mib: u64, ram_mib: u64, need_mib: u64 },
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

/// The chunk list: `chunk <size>` then one SHA-256 per chunk, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    pub chunk_size: u64,
    pub hashes: Vec<String>,
}

/// Pure: parses a chunk list.
pub fn parse_chunks(text: &str) -> Result<ChunkList, String> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("empty")?;
    let chunk_size: u64 = first
        .strip_prefix("chunk ")
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n >= 4096)
        .ok_or_else(|| format!("first line {first:?} is not `chunk <bytes>`"))?;
    let hashes: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_checksum(l).ok_or_else(|| format!("bad line {l:?}")))
        .collect::<Result<_, _>>()?;
    if hashes.is_empty() {
        return Err("no chunks".into());
    }
    Ok(ChunkList { chunk_size, hashes })
}

/// Pure: the chunk list for `data` (the builder writes this; tests use it).
pub fn chunk_list(data: &[u8], chunk_size: u64) -> String {
    let mut out = format!("chunk {chunk_size}\n");
    for c in data.chunks(chunk_size as usize) {
        out.push_str(&sha256_hex(&mut &c[..]).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// What a chunk check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact,
    /// The first chunk whose hash differs.
    BadChunk(usize),
    /// The file has a different number of chunks than the list: cut short (or padded).
    WrongLength {
        have: u64,
        chunks: usize,
    },
}

/// Checks every chunk of `image` against `list`, spreading the chunks over `threads`.
pub fn verify_chunks(image: &Path, list: &ChunkList, threads: usize) -> Result<Verdict, ImageError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(image).map_err(|source| ImageError::Missing { path: image.into(), source })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let expected_chunks = size.div_ceil(list.chunk_size) as usize;
    if expected_chunks != list.hashes.len() {
        return Ok(Verdict::WrongLength { have: size, chunks: list.hashes.len() });
    }
    let threads = threads.clamp(1, 16);
    let bad = std::sync::Mutex::new(None::<usize>);
    let io_err = std::sync::Mutex::new(None::<std::io::Error>);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (file, bad, io_err) = (&file, &bad, &io_err);
            s.spawn(move || {
                let mut buf = vec![0u8; list.chunk_size as usize];
                for i in (t..list.hashes.len()).step_by(threads) {
                    let off = i as u64 * list.chunk_size;
                    let len = list.chunk_size.min(size - off) as usize;
                    if let Err(e) = file.read_exact_at(&mut buf[..len], off) {
                        *io_err.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        return;
                    }
                    if sha256_hex(&mut &buf[..len]).ok().as_deref() != Some(list.hashes[i].as_str()) {
                        let mut b = bad.lock().unwrap_or_else(|e| e.into_inner());
                        *b = Some(b.map_or(i, |x| x.min(i)));
                    }
                }
            });
        }
    });
    if let Some(source) = io_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(ImageError::Read { path: image.into(), source });
    }
    Ok(match bad.into_inner().unwrap_or_else(|e| e.into_inner()) {
        None => Verdict::Intact,
        Some(i) => Verdict::BadChunk(i),
    })
}

fn ram_mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Verifies the image with its chunk list on all CPUs when there is one, else with the
/// whole-file SHA-256. Returns the image size in bytes.
pub fn verify_image(image: &Path, checksum_file: &Path, chunks_file: &Path) -> Result<u64, ImageError> {
    let Ok(text) = std::fs::read_to_string(chunks_file) else {
        return verify(image, checksum_file);
    };
    let list = parse_chunks(&text).map_err(|problem| ImageError::BadChunkList { path: chunks_file.into(), problem })?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match verify_chunks(image, &list, threads)? {
        Verdict::Intact => Ok(std::fs::metadata(image).map(|m| m.len()).unwrap_or(0)),
        Verdict::WrongLength { have, chunks } => {
            // The kernel unpacks the image into RAM while the loaded copy is still there;
            // when memory runs out the file is silently cut short.
            let want = (chunks as u64 - 1) * list.chunk_size;
            Err(ImageError::Incomplete {
                have_mib: have >> 20,
                want_mib: want >> 20,
                ram_mib: ram_mib(),
                need_mib: (want >> 20) * 3 + 128,
            })
        }
        Verdict::BadChunk(i) => Err(ImageError::Corrupt {
            expected: format!(
                "chunk {i} ({} MiB in) to hash {}",
                (i as u64 * list.chunk_size) >> 20,
                list.hashes.get(i).map(String::as_str).unwrap_or("?")
            ),
            actual: "a different hash".into(),
        }),
    }
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
    fn chunk_lists_parse_and_catch_flips_and_truncation() {
        let dir = std::env::temp_dir().join(format!("lw-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("rootfs.squashfs");
        let mut data: Vec<u8> = (0..(5 * 65536 + 123)).map(|i| (i % 251) as u8).collect();
        let list_text = chunk_list(&data, 65536);
        let list = parse_chunks(&list_text).unwrap();
        assert_eq!(list.hashes.len(), 6);
        std::fs::write(&img, &data).unwrap();
        for threads in [1, 2, 3] {
            assert_eq!(verify_chunks(&img, &list, threads).unwrap(), Verdict::Intact);
        }
        data[3 * 65536 + 7] ^= 0x01;
        std::fs::write(&img, &data).unwrap();
        assert_eq!(verify_chunks(&img, &list, 2).unwrap(), Verdict::BadChunk(3));
        let chunks = dir.join("c");
        std::fs::write(&chunks, &list_text).unwrap();
        let err = verify_image(&img, &dir.join("none"), &chunks).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("write the ISO to it again"), "{err}");
        data.truncate(4 * 65536);
        std::fs::write(&img, &data).unwrap();
        assert_eq!(verify_chunks(&img, &list, 2).unwrap(), Verdict::WrongLength { have: 4 * 65536, chunks: 6 });
        let err = verify_image(&img, &dir.join("none"), &chunks).unwrap_err();
        assert!(matches!(err, ImageError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("add RAM"), "{err}");
        assert!(parse_chunks("chunk 12\nabc").is_err());
        assert!(parse_chunks("").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
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
