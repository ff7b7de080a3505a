//! The image's kernel module tree: drop what no Docker server needs (keeping whatever a
//! kept module depends on), decompress the rest, and index it with depmod.

use crate::error::{IoContext, Result};
use lightwhale_init::kmod::DepTable;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("kmods.rs");

const STEP: &str = "kernel modules";

/// Pure: whether a module file (relative to the release directory) is in a dropped
/// directory or file of `drop` (below `kernel/`; a trailing `*` matches a name prefix).
pub fn is_dropped(drop: &[String], rel: &str) -> bool {
    let rel = rel.strip_prefix("kernel/").unwrap_or(rel);
    drop.iter().any(|d| match d.strip_suffix('*') {
        Some(prefix) => rel.starts_with(prefix),
        None => rel == d.as_str() || rel.starts_with(&format!("{}/", d.trim_end_matches('/'))),
    })
}

/// What prune did.
pub struct Pruned {
    pub dropped: usize,
    pub kept: usize,
}

/// Removes the dropped modules from `moddir` (`<root>/usr/lib/modules/<release>`, which
/// must hold a modules.dep), then decompresses the rest: squashfs compresses them as well
/// as xz did, and the kernel loads a plain .ko much faster than it unpacks a .ko.xz (the
/// difference is seconds of boot under TCG). Module signatures are appended to the module
/// inside the compressed payload, so they survive this.
pub fn prune(moddir: &Path, drop: &[String]) -> Result<Pruned> {
    let dep_text = std::fs::read_to_string(moddir.join("modules.dep")).ctx(STEP, moddir)?;
    let deps = DepTable::parse(&dep_text, "");
    let kept: Vec<&str> = deps.names().filter(|n| deps.path(n).is_some_and(|p| !is_dropped(drop, p))).collect();
    let (needed, _) = deps.load_order(kept.iter().copied());
    let needed: HashSet<String> = needed.into_iter().collect();
    let mut dropped = 0;
    for name in deps.names() {
        if !needed.contains(name) {
            let p = moddir.join(deps.path(name).unwrap_or_default());
            std::fs::remove_file(&p).ctx(STEP, &p)?;
            dropped += 1;
        }
    }
    let compressed: Vec<PathBuf> = crate::tree::walk(moddir)
        .ctx(STEP, moddir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "xz"))
        .collect();
    for chunk in compressed.chunks(400) {
        crate::cmd::output(STEP, Command::new("xz").args(["--decompress", "--threads=0", "--"]).args(chunk))?;
    }
    Ok(Pruned { dropped, kept: needed.len() })
}

/// What the kernel's module signing appends after the signature (include/linux/module_signature.h).
pub const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Pure: whether a module file's bytes end in an appended signature.
pub fn is_signed(module: &[u8]) -> bool {
    module.ends_with(SIGNATURE_MAGIC)
}

/// The modules under `moddir` without an appended signature. For a signed kernel (the
/// Debian path's), each one would be refused under Secure Boot: lockdown allows no
/// unsigned modules. Reads only the end of each file.
pub fn unsigned(moddir: &Path) -> Result<Vec<PathBuf>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = Vec::new();
    for p in crate::tree::walk(moddir).ctx(STEP, moddir)? {
        if p.extension().is_none_or(|e| e != "ko") {
            continue;
        }
        let mut f = std::fs::File::open(&p).ctx(STEP, &p)?;
        let mut tail = Vec::new();
        let len = f.metadata().ctx(STEP, &p)?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(SIGNATURE_MAGIC.len() as u64))).ctx(STEP, &p)?;
        f.read_to_end(&mut tail).ctx(STEP, &p)?;
        if !is_signed(&tail) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `depmod -b root release`: modules.dep and the alias tables for the pruned tree.
pub fn depmod(root: &Path, release: &str) -> Result<()> {
    crate::cmd::output(STEP, Command::new("depmod").arg("-b").arg(root).arg(release)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_found_at_the_end_only() {
        assert!(is_signed(b"\x7fELF...\x00\x01~Module signature appended~\n"));
        assert!(!is_signed(b"\x7fELF...~Module signature appended~\nmore"));
        assert!(!is_signed(b""));
    }

    #[test]
    fn dropped_by_directory_file_or_prefix() {
        let drop: Vec<String> =
            ["sound", "drivers/gpu", "lib/test_*", "drivers/block/rbd.ko.xz"].map(String::from).to_vec();
        assert!(is_dropped(&drop, "kernel/sound/core/snd.ko.xz"));
        assert!(is_dropped(&drop, "kernel/drivers/gpu/drm/drm.ko.xz"));
        assert!(!is_dropped(&drop, "kernel/drivers/gpufoo/x.ko.xz"));
        assert!(is_dropped(&drop, "kernel/lib/test_bpf.ko.xz"));
        assert!(is_dropped(&drop, "kernel/drivers/block/rbd.ko.xz"));
        assert!(!is_dropped(&drop, "kernel/drivers/block/loop.ko.xz"));
    }
}
