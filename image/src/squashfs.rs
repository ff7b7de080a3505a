//! rootfs.squashfs from a finished root tree, and rootfs.img: the cpio that carries the
//! squashfs, its SHA-256 and its chunk list into RAM as the second initrd.

use crate::cpio;
use crate::error::{IoContext, Result};
use crate::progress::Step;
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("squashfs.rs");

const STEP: &str = "squashfs";

/// Compression chosen by measurement (docs/building.md, "Image size").
pub const SQUASHFS_OPTS: &[&str] = &["-comp", "zstd", "-Xcompression-level", "19", "-b", "1M"];

/// The mksquashfs compression options: SQUASHFS_OPTS, or LIGHTWHALE_SQUASHFS_OPTS for
/// measuring alternatives with `cargo xtask bench`.
pub fn squashfs_opts() -> Vec<String> {
    match std::env::var("LIGHTWHALE_SQUASHFS_OPTS") {
        Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_string).collect(),
        _ => SQUASHFS_OPTS.iter().map(|s| s.to_string()).collect(),
    }
}

/// How a root tree becomes a squashfs.
pub struct Squashfs<'a> {
    pub tree: &'a Path,
    pub out: &'a Path,
    /// Every timestamp in the image.
    pub epoch: u64,
    /// mksquashfs pseudo definitions (modes, owners, setuid bits the tree itself cannot
    /// hold, e.g. when it was built by an unprivileged Nix builder).
    pub pseudo_file: Option<&'a Path>,
    /// Every file owned by root (for trees built without root; owners that matter then
    /// come from `pseudo_file`).
    pub all_root: bool,
    /// mksquashfs's output goes here.
    pub log: &'a Path,
}

pub fn build(s: &Squashfs) -> Result<PathBuf> {
    let step = Step::start("squashfs: compressing the image");
    // The last build's image is about as large as this one will be: the heartbeat compares.
    let last_size = std::fs::metadata(s.out).map(|m| m.len()).ok();
    let _ = std::fs::remove_file(s.out);
    let epoch = s.epoch.to_string();
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(s.tree)
        .arg(s.out)
        .args(["-noappend", "-mkfs-time", &epoch, "-all-time", &epoch])
        .args(squashfs_opts())
        .env_remove("SOURCE_DATE_EPOCH");
    if s.all_root {
        cmd.arg("-all-root");
    }
    if let Some(p) = s.pseudo_file {
        cmd.arg("-pf").arg(p);
        if s.all_root {
            // The pseudo file's owners (a user's home) win over -all-root (squashfs-tools 4.6).
            cmd.arg("-pseudo-override");
        }
    }
    // mksquashfs's own progress bar counts blocks in an order that says little about the
    // time left (9 % after 80 of 86 s here); the bytes written so far say more.
    let written = || {
        let now = std::fs::metadata(s.out).ok()?.len();
        Some(written_so_far(now, last_size))
    };
    crate::cmd::run_logged_measured(
        STEP,
        &mut cmd,
        s.log,
        |_| false,
        |_| "mksquashfs failed (disk full?).".into(),
        written,
    )?;
    let size = std::fs::metadata(s.out).ctx(STEP, s.out)?.len();
    step.done(&format!("{} ({:.1} MB)", s.out.display(), size as f64 / 1e6));
    Ok(s.out.to_path_buf())
}

/// Pure: how far mksquashfs is, from the bytes it has written and the last image's size.
pub fn written_so_far(bytes: u64, last_size: Option<u64>) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    match last_size {
        Some(last) if last > 0 => format!("{:.0} MB written, the last image had {:.0} MB", mb(bytes), mb(last)),
        _ => format!("{:.0} MB written", mb(bytes)),
    }
}

/// Writes `out`: a cpio holding `lightwhale/rootfs.squashfs` with its SHA-256 (for people)
/// and per-chunk hashes (the init checks those on every CPU at once).
pub fn rootfs_img(squashfs: &Path, out: &Path, epoch: u64) -> Result<PathBuf> {
    let step = Step::start("rootfs.img: checksum and cpio wrapper");
    let sha = crate::sha256_file(squashfs).ctx(STEP, squashfs)?;
    let data = std::fs::read(squashfs).ctx(STEP, squashfs)?;
    let chunks = lightwhale_types::image::chunk_list(&data, lightwhale_types::image::CHUNK_SIZE);
    drop(data);
    let file = std::fs::File::create(out).ctx(STEP, out)?;
    let mut w = cpio::Writer::new(std::io::BufWriter::new(file), epoch as u32);
    let size = std::fs::metadata(squashfs).ctx(STEP, squashfs)?.len();
    let mut src = std::fs::File::open(squashfs).ctx(STEP, squashfs)?;
    // The paths where the init looks for them, relative to the initramfs root.
    use lightwhale_types::image::{SQUASHFS, SQUASHFS_CHUNKS, SQUASHFS_SHA256};
    let rel = |p: &'static str| p.trim_start_matches('/');
    let dir = Path::new(rel(SQUASHFS)).parent().and_then(Path::to_str).unwrap_or("lightwhale");
    let name = Path::new(SQUASHFS).file_name().and_then(|n| n.to_str()).unwrap_or("rootfs.squashfs");
    (|| {
        w.dir(dir, 0o755)?;
        w.file(rel(SQUASHFS_SHA256), 0o644, format!("{sha}  {name}\n").as_bytes())?;
        w.file(rel(SQUASHFS_CHUNKS), 0o644, chunks.as_bytes())?;
        w.file_from(rel(SQUASHFS), 0o644, size, &mut src)?;
        w.finish().map(|_| ())
    })()
    .ctx(STEP, out)?;
    step.done(&format!("sha256 {}", &sha[..16]));
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_told_in_megabytes_against_the_last_image() {
        assert_eq!(written_so_far(74_347_682, Some(151_700_000)), "74 MB written, the last image had 152 MB");
        assert_eq!(written_so_far(15_000_000, None), "15 MB written");
        assert_eq!(written_so_far(0, Some(0)), "0 MB written");
    }
}
