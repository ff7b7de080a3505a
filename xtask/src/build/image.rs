//! rootfs.squashfs from the tree, and rootfs.img: the cpio that carries the squashfs and
//! its SHA-256 into RAM as the second initrd.

use super::cpio;
use super::Ctx;
use crate::error::{IoContext, Result};
use crate::util::{self, Step};
use std::path::{Path, PathBuf};
use std::process::Command;

const STEP: &str = "squashfs";

/// Compression chosen by measurement (see README, "Image size").
pub const SQUASHFS_OPTS: &[&str] = &["-comp", "zstd", "-Xcompression-level", "19", "-b", "1M"];

/// The mksquashfs compression options: SQUASHFS_OPTS, or LIGHTWHALE_SQUASHFS_OPTS for
/// measuring alternatives with `cargo xtask bench`.
pub fn squashfs_opts() -> Vec<String> {
    match std::env::var("LIGHTWHALE_SQUASHFS_OPTS") {
        Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_string).collect(),
        _ => SQUASHFS_OPTS.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn squashfs(ctx: &Ctx, tree: &Path) -> Result<PathBuf> {
    let step = Step::start("squashfs: compressing the image");
    let out = ctx.build.join("rootfs.squashfs");
    let _ = std::fs::remove_file(&out);
    let epoch = ctx.epoch.to_string();
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(tree)
        .arg(&out)
        .args(["-noappend", "-no-progress", "-mkfs-time", &epoch, "-all-time", &epoch])
        .args(squashfs_opts())
        .env_remove("SOURCE_DATE_EPOCH");
    util::run_logged(
        STEP,
        &mut cmd,
        &ctx.build.join("mksquashfs.log"),
        |_| false,
        |_| "mksquashfs failed (disk full?).".into(),
    )?;
    let size = std::fs::metadata(&out).ctx(STEP, &out)?.len();
    step.done(&format!("{} ({:.1} MB)", out.display(), size as f64 / 1e6));
    Ok(out)
}

pub fn rootfs_img(ctx: &Ctx, squashfs: &Path) -> Result<PathBuf> {
    let step = Step::start("rootfs.img: checksum and cpio wrapper");
    let sha = util::sha256_file(squashfs).ctx(STEP, squashfs)?;
    // Per-chunk hashes let the init check the image on every CPU at once.
    let data = std::fs::read(squashfs).ctx(STEP, squashfs)?;
    let chunks = lightwhale_init::image::chunk_list(&data, lightwhale_init::image::CHUNK_SIZE);
    drop(data);
    let out = ctx.build.join("rootfs.img");
    let file = std::fs::File::create(&out).ctx(STEP, &out)?;
    let mut w = cpio::Writer::new(std::io::BufWriter::new(file), ctx.epoch as u32);
    let size = std::fs::metadata(squashfs).ctx(STEP, squashfs)?.len();
    let mut src = std::fs::File::open(squashfs).ctx(STEP, squashfs)?;
    (|| {
        w.dir("lightwhale", 0o755)?;
        w.file("lightwhale/rootfs.squashfs.sha256", 0o644, format!("{sha}  rootfs.squashfs\n").as_bytes())?;
        w.file("lightwhale/rootfs.squashfs.chunks", 0o644, chunks.as_bytes())?;
        w.file_from("lightwhale/rootfs.squashfs", 0o644, size, &mut src)?;
        w.finish().map(|_| ())
    })()
    .ctx(STEP, &out)?;
    step.done(&format!("sha256 {}", &sha[..16]));
    Ok(out)
}
