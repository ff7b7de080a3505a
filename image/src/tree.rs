//! File-tree operations of the root-tree steps: copying module files in, removing what
//! globs match, and deleting an old tree without ever deleting through a mount point.

use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("tree.rs");

const STEP: &str = "tree";

/// Every path below `root` (not `root` itself, not following symlinks), sorted by name
/// within each directory, directories before their contents.
pub fn walk(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.map(|e| e.into_path()).map_err(std::io::Error::from))
        .collect()
}

/// Copies `src` over `dst`, keeping modes and symlinks; everything copied is owned by root
/// (when running as root; otherwise the squashfs step makes it so).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let as_root = crate::is_root();
    for p in walk(src).ctx(STEP, src)? {
        let rel = p.strip_prefix(src).unwrap_or(&p);
        let target = dst.join(rel);
        let meta = std::fs::symlink_metadata(&p).ctx(STEP, &p)?;
        if meta.is_dir() {
            std::fs::create_dir_all(&target).ctx(STEP, &target)?;
        } else {
            if std::fs::symlink_metadata(&target).is_ok() {
                std::fs::remove_file(&target).ctx(STEP, &target)?;
            }
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&p).ctx(STEP, &p)?, &target).ctx(STEP, &target)?;
            } else {
                std::fs::copy(&p, &target).ctx(STEP, &target)?;
            }
        }
        if as_root {
            std::os::unix::fs::lchown(&target, Some(0), Some(0)).ctx(STEP, &target)?;
        }
    }
    Ok(())
}

/// What `pattern` (relative to `root`; `*`, `?` and `[...]` within one path component,
/// `**` for any number of directories) matches below `root`, sorted.
pub fn glob(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let pattern = pattern.trim_start_matches('/');
    if pattern.is_empty() {
        return Vec::new();
    }
    let full = format!("{}/{pattern}", glob::Pattern::escape(&root.to_string_lossy()));
    let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    let mut v: Vec<PathBuf> = match glob::glob_with(&full, options) {
        Ok(paths) => paths.flatten().filter(|p| p != root).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v.dedup();
    v
}

/// Removes what a glob matches below `root`; returns how many paths it removed.
pub fn remove_glob(root: &Path, pattern: &str) -> Result<usize> {
    let mut n = 0;
    for p in glob(root, pattern) {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            std::fs::remove_dir_all(&p).ctx(STEP, &p)?;
        } else {
            std::fs::remove_file(&p).ctx(STEP, &p)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Removes the setuid and setgid bits of every regular file below `root` except `keep`
/// (paths relative to `root`); returns the files it changed, relative to `root`.
pub fn strip_setuid(root: &Path, keep: &[String]) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut changed = Vec::new();
    for p in walk(root).ctx(STEP, root)? {
        let meta = std::fs::symlink_metadata(&p).ctx(STEP, &p)?;
        let mode = meta.permissions().mode();
        if !meta.is_file() || mode & 0o6000 == 0 {
            continue;
        }
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        if keep.iter().any(|k| Path::new(k.trim_start_matches('/')) == rel) {
            continue;
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & !0o6000)).ctx(STEP, &p)?;
        changed.push(rel);
    }
    Ok(changed)
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    lightwhale_types::mountinfo::mounts_below(&info, dir)
}

/// Lazily unmounts everything at or below `dir` (a failed mmdebstrap can leave its bind
/// mounts behind).
pub fn unmount_below(dir: &Path) {
    for m in mounts_below(dir) {
        let _ = Command::new("umount").arg("--lazy").arg(&m).status();
    }
}

/// Deletes an old tree, but never through a mount point (that would delete host files).
pub fn remove_tree(tree: &Path) -> Result<()> {
    if std::fs::symlink_metadata(tree).is_err() {
        return Ok(());
    }
    unmount_below(tree);
    if let Some(m) = mounts_below(tree).first() {
        return Err(Error::Step {
            step: STEP,
            message: format!("{} is still mounted; unmount it, then build again", m.display()),
        });
    }
    std::fs::remove_dir_all(tree).ctx(STEP, tree)
}

/// Sets a file's access and modification time (ISO and ESP files carry the build date).
pub fn set_mtime(p: &Path, epoch: u64) -> Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let times = std::fs::FileTimes::new().set_accessed(t).set_modified(t);
    std::fs::File::open(p).and_then(|f| f.set_times(times)).ctx(STEP, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lw-tree-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn glob_expands_within_components() {
        let dir = scratch("glob");
        std::fs::create_dir_all(dir.join("usr/share/doc/a")).unwrap();
        std::fs::create_dir_all(dir.join("usr/share/doc/b")).unwrap();
        std::fs::write(dir.join("usr/share/doc/a/copyright"), "").unwrap();
        std::fs::write(dir.join("usr/share/doc/a/README"), "").unwrap();
        std::fs::write(dir.join("etc-passwd-"), "").unwrap();
        let got = glob(&dir, "usr/share/doc/*/READ*");
        assert_eq!(got, vec![dir.join("usr/share/doc/a/README")]);
        assert_eq!(glob(&dir, "usr/share/doc/*").len(), 2);
        assert!(glob(&dir, "nope/*").is_empty());
        assert_eq!(glob(&dir, "**/copyright"), vec![dir.join("usr/share/doc/a/copyright")]);
        assert_eq!(glob(&dir, "/etc-*-"), vec![dir.join("etc-passwd-")]);
        // `*` never crosses a directory boundary.
        assert!(glob(&dir, "usr/*/a").is_empty());
        assert_eq!(remove_glob(&dir, "usr/share/doc/*").unwrap(), 2);
        assert!(!dir.join("usr/share/doc/a").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn glob_under_a_root_with_special_characters() {
        let dir = scratch("glob [x] *");
        std::fs::write(dir.join("f1"), "").unwrap();
        assert_eq!(glob(&dir, "f*"), vec![dir.join("f1")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn setuid_bits_go_except_where_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("setuid");
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        for (f, mode) in
            [("usr/bin/sudo", 0o4755), ("usr/bin/passwd", 0o4755), ("usr/bin/chage", 0o2755), ("usr/bin/ls", 0o755)]
        {
            std::fs::write(dir.join(f), "").unwrap();
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let changed = strip_setuid(&dir, &["usr/bin/sudo".into()]).unwrap();
        assert_eq!(changed, vec![PathBuf::from("usr/bin/chage"), PathBuf::from("usr/bin/passwd")]);
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("usr/bin/sudo"), mode("usr/bin/passwd"), mode("usr/bin/chage")), (0o4755, 0o755, 0o755));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copy_tree_keeps_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("copy");
        let (src, dst) = (dir.join("src"), dir.join("dst"));
        std::fs::create_dir_all(src.join("etc/x")).unwrap();
        std::fs::write(src.join("etc/x/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("etc/x/run"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("run", src.join("etc/x/link")).unwrap();
        std::fs::create_dir_all(dst.join("etc/x")).unwrap();
        std::fs::write(dst.join("etc/x/link"), "old file").unwrap();
        copy_tree(&src, &dst).unwrap();
        let mode = std::fs::metadata(dst.join("etc/x/run")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        assert_eq!(std::fs::read_link(dst.join("etc/x/link")).unwrap(), Path::new("run"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A checkout path with a space, a bind mount left inside the old tree (as a failed
    /// mmdebstrap leaves /proc or /dev): cleaning must unmount it and never delete the
    /// files behind it.
    #[test]
    #[ignore = "needs root (mount --bind): run with `cargo xtask test`"]
    fn remove_tree_under_a_path_with_a_space_never_deletes_through_a_bind_mount() {
        let dir = scratch("my checkout");
        let tree = dir.join("out/build/rootfs");
        let host = dir.join("host files");
        std::fs::create_dir_all(tree.join("proc")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("precious"), "keep me").unwrap();
        std::fs::write(tree.join("etc-file"), "old tree").unwrap();
        let ok = Command::new("mount").arg("--bind").arg(&host).arg(tree.join("proc")).status().unwrap();
        assert!(ok.success(), "mount --bind failed");
        assert_eq!(
            mounts_below(&tree),
            vec![tree.join("proc")],
            "the bind mount under a path with a space was not seen"
        );
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(std::fs::read_to_string(host.join("precious")).unwrap(), "keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
