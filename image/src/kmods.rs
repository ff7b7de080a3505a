//! The image's kernel module tree: drop what no Docker server needs (keeping whatever a
//! kept module depends on), decompress the rest, and index it with depmod.

use crate::error::{Error, IoContext, Result};
use lightwhale_types::kmod::DepTable;
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

/// Pure: the required modules that the kept set lacks, each with why: not in this kernel,
/// or dropped by which `drop` entry.
pub fn missing_required(deps: &DepTable, kept: &HashSet<String>, drop: &[String], require: &[String]) -> Vec<String> {
    require
        .iter()
        .filter(|r| !deps.is_builtin(r) && !kept.contains(&lightwhale_types::kmod::normalize(r)))
        .map(|r| match deps.path(r) {
            None => format!("{r} (not in this kernel)"),
            Some(p) => {
                let by = drop.iter().find(|d| is_dropped(std::slice::from_ref(d), p));
                format!(
                    "{r} (dropped by [prune] drop_kernel_modules entry {:?})",
                    by.map(String::as_str).unwrap_or("?")
                )
            }
        })
        .collect()
}

/// What prune did.
pub struct Pruned {
    pub dropped: usize,
    pub kept: usize,
    /// Kept modules that carry a signature (lockdown=integrity loads only those when the
    /// kernel enforces signatures, as Debian's does).
    pub signed: usize,
}

/// The marker the kernel's sign-file appends after a module's signature
/// (include/linux/module_signature.h).
const SIGNATURE_MARKER: &[u8] = b"~Module signature appended~\n";

/// Pure: whether a decompressed module ends with a signature.
pub fn is_signed(module: &[u8]) -> bool {
    module.ends_with(SIGNATURE_MARKER)
}

/// Removes the dropped modules from `moddir` (`<root>/usr/lib/modules/<release>`, which
/// must hold a modules.dep), then decompresses the rest: squashfs compresses them as well
/// as xz did, and the kernel loads a plain .ko much faster than it unpacks a .ko.xz (the
/// difference is seconds of boot under TCG). Module signatures are appended to the module
/// inside the compressed payload, so they survive this.
///
/// `require` lists modules the image must keep (the modules' `require_kernel_modules`):
/// the build fails, naming the module and the entry that dropped it, rather than shipping
/// an image that silently lacks them.
pub fn prune(moddir: &Path, drop: &[String], require: &[String]) -> Result<Pruned> {
    let dep_text = std::fs::read_to_string(moddir.join("modules.dep")).ctx(STEP, moddir)?;
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let deps = DepTable::parse(&dep_text, &builtin);
    let kept: Vec<&str> = deps.names().filter(|n| deps.path(n).is_some_and(|p| !is_dropped(drop, p))).collect();
    let (needed, _) = deps.load_order(kept.iter().copied());
    let needed: HashSet<String> = needed.into_iter().collect();
    let missing = missing_required(&deps, &needed, drop, require);
    if !missing.is_empty() {
        return Err(Error::Step {
            step: STEP,
            message: format!(
                "the image must keep these kernel modules (require_kernel_modules in modules/*/module.toml): {}",
                missing.join(", ")
            ),
        });
    }
    let mut dropped = 0;
    for name in deps.names() {
        if !needed.contains(name) {
            let p = moddir.join(deps.path(name).unwrap_or_default());
            std::fs::remove_file(&p).ctx(STEP, &p)?;
            dropped += 1;
        }
    }
    remove_empty_dirs(&moddir.join("kernel"))?;
    let compressed: Vec<PathBuf> = crate::tree::walk(moddir)
        .ctx(STEP, moddir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "xz"))
        .collect();
    for chunk in compressed.chunks(400) {
        crate::cmd::output(STEP, Command::new("xz").args(["--decompress", "--threads=0", "--"]).args(chunk))?;
    }
    let mut signed = 0;
    for p in crate::tree::walk(moddir).ctx(STEP, moddir)?.iter().filter(|p| p.extension().is_some_and(|e| e == "ko")) {
        if is_signed(&std::fs::read(p).ctx(STEP, p)?) {
            signed += 1;
        }
    }
    Ok(Pruned { dropped, kept: needed.len(), signed })
}

/// Removes the directories that dropping modules left empty (deepest first), so a dropped
/// protocol leaves no trace in the tree.
pub fn remove_empty_dirs(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut dirs: Vec<PathBuf> = crate::tree::walk(dir).ctx(STEP, dir)?.into_iter().filter(|p| p.is_dir()).collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in dirs {
        if std::fs::read_dir(&d).ctx(STEP, &d)?.next().is_none() {
            std::fs::remove_dir(&d).ctx(STEP, &d)?;
            removed += 1;
        }
    }
    Ok(removed)
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
        f.seek(SeekFrom::Start(len.saturating_sub(SIGNATURE_MARKER.len() as u64))).ctx(STEP, &p)?;
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
    fn required_modules_must_survive_pruning() {
        let deps = DepTable::parse(
            "kernel/drivers/net/vxlan/vxlan.ko:\nkernel/net/netfilter/ipvs/ip_vs.ko:\n",
            "kernel/net/xfrm/xfrm_user.ko\n",
        );
        let kept: HashSet<String> = ["ip_vs".to_string()].into();
        let drop = vec!["drivers/net/vxlan".to_string()];
        let req: Vec<String> = ["ip_vs", "vxlan", "xfrm_user", "xt_bpf"].map(String::from).to_vec();
        assert_eq!(
            missing_required(&deps, &kept, &drop, &req),
            vec![
                "vxlan (dropped by [prune] drop_kernel_modules entry \"drivers/net/vxlan\")".to_string(),
                "xt_bpf (not in this kernel)".to_string()
            ]
        );
    }

    #[test]
    fn empty_directories_go_nested_ones_too() {
        let dir = std::env::temp_dir().join(format!("lw-kmods-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("net/dccp")).unwrap();
        std::fs::create_dir_all(dir.join("net/l2tp/deeper")).unwrap();
        std::fs::create_dir_all(dir.join("fs/ext4")).unwrap();
        std::fs::write(dir.join("fs/ext4/ext4.ko"), "").unwrap();
        assert_eq!(remove_empty_dirs(&dir).unwrap(), 4);
        assert!(!dir.join("net").exists() && dir.join("fs/ext4/ext4.ko").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
