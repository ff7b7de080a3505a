//! The image tree: Debian trixie packages installed by mmdebstrap (with a package cache
//! outside the checkout), then each module's files, users and init configuration, then
//! pruning. The result is squashed into rootfs.squashfs.

use super::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::modules::{self, Module};
use crate::util::{self, Step};
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text is part of the staleness key: changing the recipe rebuilds.
pub const RECIPE: &str = include_str!("rootfs.rs");

const STEP: &str = "rootfs";

pub struct Rootfs {
    pub tree: PathBuf,
    pub kernel_release: String,
}

pub fn build(ctx: &Ctx, modules: &[Module]) -> Result<Rootfs> {
    let tree = ctx.build.join("rootfs");
    remove_tree(&tree)?;
    let made = mmdebstrap(ctx, modules, &tree);
    // A failed mmdebstrap can leave its bind mounts behind; never leave them mounted.
    unmount_below(&tree);
    made?;
    let kernel_release = customize(ctx, modules, &tree)?;
    Ok(Rootfs { tree, kernel_release })
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_below(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

fn unmount_below(dir: &Path) {
    for m in mounts_below(dir) {
        let _ = Command::new("umount").arg("--lazy").arg(&m).status();
    }
}

/// Deletes an old tree, but never through a mount point (that would delete host files).
fn remove_tree(tree: &Path) -> Result<()> {
    if !tree.exists() {
        return Ok(());
    }
    unmount_below(tree);
    if let Some(m) = mounts_below(tree).first() {
        return Err(Error::Step { step: STEP, message: format!("{m} is still mounted; unmount it, then build again") });
    }
    std::fs::remove_dir_all(tree).ctx(STEP, tree)
}

fn mmdebstrap(ctx: &Ctx, modules: &[Module], tree: &Path) -> Result<()> {
    let packages = modules::debian_packages(modules);
    let step = Step::start(format!(
        "rootfs: installing {} Debian {} packages and their dependencies (mmdebstrap)",
        packages.len(),
        ctx.suite
    ));
    let debs = ctx.cache.join("debs");
    let lists = ctx.cache.join(format!("lists-{}", ctx.suite));
    std::fs::create_dir_all(&debs).ctx(STEP, &debs)?;
    let have_lists = lists.join(".complete").exists();
    std::fs::create_dir_all(&lists).ctx(STEP, &lists)?;
    let stubs = build_stubs(ctx, modules)?;
    let cached_before = count_debs(&debs);

    let mut cmd = Command::new("mmdebstrap");
    cmd.env("SOURCE_DATE_EPOCH", ctx.epoch.to_string())
        .arg("--variant=essential")
        .arg("--mode=root")
        .arg("--format=directory")
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg("--dpkgopt=path-exclude=/usr/share/man/*")
        .arg("--dpkgopt=path-exclude=/usr/share/info/*")
        .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
        .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        .arg(format!("--include={}", packages.join(",")));
    for s in &stubs.debs {
        cmd.arg(format!("--include={}", s.display()));
    }
    if !stubs.debs.is_empty() {
        // dpkg runs inside the chroot and must see the stub .debs at the same path.
        cmd.arg("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount");
    }
    cmd.arg("--skip=essential/unlink")
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/ \"$1\"/var/lib/apt/lists/")
        .arg(format!("--setup-hook=sync-in {} /var/cache/apt/archives/", debs.display()));
    if have_lists {
        // Same package index as the last build: reproducible, and no download at all
        // when the .debs are cached too. `cargo xtask iso --refresh` fetches new lists.
        cmd.arg(format!("--setup-hook=sync-in {} /var/lib/apt/lists/", lists.display())).arg("--skip=update");
    }
    cmd.arg(format!("--customize-hook=sync-out /var/cache/apt/archives {}", debs.display()))
        .arg(format!("--customize-hook=sync-out /var/lib/apt/lists {}", lists.display()))
        .arg(&ctx.suite)
        .arg(tree)
        .arg(&ctx.mirror);
    let log = ctx.build.join("mmdebstrap.log");
    util::run_logged(
        STEP,
        &mut cmd,
        &log,
        |l| l.starts_with("I: ") && !l.contains("skipping"),
        |text| mmdebstrap_hint(text, &ctx.mirror),
    )?;
    std::fs::write(lists.join(".complete"), "").ctx(STEP, &lists)?;
    let downloaded = count_debs(&debs).saturating_sub(cached_before);
    step.done(&format!("{downloaded} .debs downloaded, {} in the cache {}", count_debs(&debs), debs.display()));
    Ok(())
}

fn count_debs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "deb")).count())
        .unwrap_or(0)
}

/// Turns mmdebstrap's log into one sentence the user can act on.
pub fn mmdebstrap_hint(log: &str, mirror: &str) -> String {
    let l = log.to_ascii_lowercase();
    if l.contains("temporary failure resolving")
        || l.contains("could not resolve")
        || l.contains("failed to fetch")
        || l.contains("unable to connect")
        || l.contains("connection failed")
    {
        format!("Downloading packages from {mirror} failed: check the network (or set LIGHTWHALE_MIRROR to a reachable Debian mirror) and run the command again; packages already downloaded stay cached.")
    } else if l.contains("unable to locate package")
        || l.contains("has no installation candidate")
        || l.contains("unmet dependencies")
    {
        "A package in modules/*/module.toml cannot be installed from this suite: check the names (or run `cargo xtask iso --refresh` to update the package lists).".into()
    } else if l.contains("mode=root") || l.contains("root privileges") || l.contains("permission denied") {
        "Building the image needs root (mmdebstrap --mode=root): run it as root or with sudo.".into()
    } else {
        "mmdebstrap failed; the log below says why.".into()
    }
}

/// The stub .debs of one build, removed with the value once mmdebstrap is done with them.
struct Stubs {
    dir: PathBuf,
    debs: Vec<PathBuf>,
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Empty packages that satisfy dependencies we do not want (see base/module.toml).
/// They live under /tmp: mmdebstrap's file-mirror hook recreates their host path inside
/// the tree, and the tree's /tmp is emptied later, so no trace of the checkout's location
/// ends up in the image (which would make builds from two checkouts differ).
fn build_stubs(ctx: &Ctx, modules: &[Module]) -> Result<Stubs> {
    let dir = PathBuf::from(format!("/tmp/lightwhale-stubs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = Stubs { dir: dir.clone(), debs: Vec::new() };
    for stub in modules.iter().flat_map(|m| &m.toml.debian.stubs) {
        let pkg = dir.join(&stub.name);
        std::fs::create_dir_all(pkg.join("DEBIAN")).ctx(STEP, &pkg)?;
        let control = format!(
            "Package: {}\nVersion: 1.0\nArchitecture: all\nMaintainer: Lightwhale <lightwhale@localhost>\nProvides: {}\nDescription: Lightwhale build stub\n Satisfies dependencies that Lightwhale fulfils itself.\n",
            stub.name,
            stub.provides.join(", ")
        );
        std::fs::write(pkg.join("DEBIAN/control"), control).ctx(STEP, &pkg)?;
        let deb = dir.join(format!("{}_1.0_all.deb", stub.name));
        util::output(
            STEP,
            Command::new("dpkg-deb")
                .env("SOURCE_DATE_EPOCH", ctx.epoch.to_string())
                .args(["--root-owner-group", "--build"])
                .arg(&pkg)
                .arg(&deb),
        )?;
        out.debs.push(deb);
    }
    Ok(out)
}

/// Runs a tool inside the tree. SOURCE_DATE_EPOCH makes shadow's "last password change"
/// the build date (0 would mean "must change at next login").
fn chroot(ctx: &Ctx, tree: &Path, args: &[&str]) -> Result<String> {
    util::output(STEP, Command::new("chroot").arg(tree).args(args).env("SOURCE_DATE_EPOCH", ctx.epoch.to_string()))
}

/// Everything after the packages: module files, users, configuration, pruning, kernel.
fn customize(ctx: &Ctx, modules: &[Module], tree: &Path) -> Result<String> {
    let step = Step::start("rootfs: adding module files, users and init configuration");
    for m in modules {
        if m.rootfs().is_dir() {
            copy_tree(&m.rootfs(), tree)?;
        }
        if m.init_ron().is_file() {
            let dst = tree.join("usr/lib/lightwhale/modules").join(&m.name);
            std::fs::create_dir_all(&dst).ctx(STEP, &dst)?;
            std::fs::copy(m.init_ron(), dst.join("init.ron")).ctx(STEP, &dst)?;
        }
    }
    // Mount points and the directories the init overlays must exist in the image.
    let cfg = lightwhale_init::config::load(&tree.join("usr/lib/lightwhale/modules"))
        .map_err(|e| Error::Step { step: STEP, message: e.to_string() })?;
    let fs = &cfg.filesystems;
    for d in fs
        .persisted
        .iter()
        .chain(&fs.volatile)
        .chain(&fs.tmpfs)
        .map(String::as_str)
        .chain([lightwhale_init::persist::MOUNT_POINT])
    {
        let p = tree.join(d.trim_start_matches('/'));
        std::fs::create_dir_all(&p).ctx(STEP, &p)?;
    }

    for u in modules.iter().flat_map(|m| &m.toml.users) {
        let exists = chroot(ctx, tree, &["getent", "passwd", &u.name]).is_ok();
        if !exists {
            chroot(ctx, tree, &["useradd", "--create-home", "--user-group", "--shell", &u.shell, &u.name])?;
        }
        if !u.groups.is_empty() {
            chroot(ctx, tree, &["usermod", "--append", "--groups", &u.groups.join(","), &u.name])?;
        }
        let hash = password_hash(ctx, &u.name, &u.password)?;
        chroot(ctx, tree, &["usermod", "--password", &hash, &u.name])?;
    }

    let release = format!(
        "NAME=Lightwhale\nID=lightwhale\nVERSION={v}\nVERSION_ID={v}\nBUILD_ID={b}\nBUILD_DATE={d}\nDEBIAN_SUITE={s}\nHOME_URL=https://lightwhale.asklandd.dk/\n",
        v = ctx.version,
        b = ctx.build_id,
        d = ctx.epoch,
        s = ctx.suite
    );
    write(tree, "etc/lightwhale-release", &release)?;

    let manifest = chroot(ctx, tree, &["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"])?;
    write(tree, "usr/share/lightwhale/manifest", &manifest)?;

    let kernel_release = kernel_release(tree)?;
    std::fs::copy(tree.join(format!("boot/vmlinuz-{kernel_release}")), ctx.build.join("vmlinuz"))
        .ctx(STEP, tree.join("boot"))?;

    // Per-machine state must be created on the machine, not baked into every image.
    for p in [
        "etc/ssh/ssh_host_*",
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "etc/resolv.conf",
        "boot/*",
        "var/log/*",
        "var/cache/*",
        "tmp/*",
        "var/tmp/*",
        "etc/.pwd.lock",
        "etc/*-",
    ] {
        remove_glob(tree, p)?;
    }
    write(tree, "etc/resolv.conf", "")?;
    write(tree, "etc/machine-id", "")?;
    let mut pruned = 0;
    for p in modules.iter().flat_map(|m| &m.toml.prune.paths) {
        pruned += remove_glob(tree, p)?;
    }
    let (dropped, kept) = prune_kernel_modules(modules, tree, &kernel_release)?;
    util::output(STEP, Command::new("depmod").args(["-b"]).arg(tree).arg(&kernel_release))?;
    step.done(&format!(
        "kernel {kernel_release} ({kept} modules kept, {dropped} dropped), {} packages, {pruned} paths pruned",
        manifest.lines().count()
    ));
    Ok(kernel_release)
}

fn write(tree: &Path, rel: &str, text: &str) -> Result<()> {
    let p = tree.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).ctx(STEP, parent)?;
    }
    std::fs::write(&p, text).ctx(STEP, &p)
}

fn kernel_release(tree: &Path) -> Result<String> {
    let dir = tree.join("usr/lib/modules");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .ctx(STEP, &dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    match v.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Step {
            step: STEP,
            message: format!("expected exactly one kernel in {}, found {v:?}", dir.display()),
        }),
    }
}

/// SHA-512 crypt with a salt derived from the build epoch: a fresh random salt would make
/// every build differ; the default password is public anyway.
fn password_hash(ctx: &Ctx, user: &str, password: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(format!("{}:{user}", ctx.epoch));
    let salt: String = digest.iter().take(16).map(|b| ALPHABET[(*b as usize) % 64] as char).collect();
    let out = util::output(STEP, Command::new("openssl").args(["passwd", "-6", "-salt", &salt, password]))?;
    Ok(out.trim().to_string())
}

/// Copies `src` over `dst`, keeping modes, owned by root.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut paths = util::walk(src).ctx(STEP, src)?;
    paths.sort();
    for p in paths {
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
        std::os::unix::fs::lchown(&target, Some(0), Some(0)).ctx(STEP, &target)?;
    }
    Ok(())
}

/// Removes what a glob (relative to the tree, `*` within one path component) matches.
fn remove_glob(tree: &Path, pattern: &str) -> Result<usize> {
    let mut n = 0;
    for p in glob(tree, pattern.trim_start_matches('/')) {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.is_dir() {
            std::fs::remove_dir_all(&p).ctx(STEP, &p)?;
        } else {
            std::fs::remove_file(&p).ctx(STEP, &p)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Expands `a/*/b*` below `root`; `**` matches any number of directories.
pub fn glob(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![root.to_path_buf()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &current {
            if comp == "**" {
                next.push(dir.clone());
                if let Ok(all) = util::walk(dir) {
                    next.extend(all.into_iter().filter(|p| p.is_dir() && !p.is_symlink()));
                }
                continue;
            }
            if !comp.contains(['*', '?', '[']) {
                let p = dir.join(comp);
                if std::fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if lightwhale_init::kmod::alias::glob_match(comp.as_bytes(), name.as_bytes()) {
                        next.push(e.path());
                    }
                }
            }
        }
        next.sort();
        next.dedup();
        current = next;
    }
    if current.len() == 1 && current[0] == root {
        return Vec::new();
    }
    current
}

/// Removes the kernel module directories that modules drop (keeping whatever a kept
/// module depends on), then decompresses the rest: squashfs compresses them as well as
/// xz did, and the kernel loads a plain .ko much faster than it unpacks a .ko.xz (the
/// difference is seconds of boot under TCG).
fn prune_kernel_modules(modules: &[Module], tree: &Path, release: &str) -> Result<(usize, usize)> {
    use lightwhale_init::kmod::DepTable;
    let moddir = tree.join("usr/lib/modules").join(release);
    let drop: Vec<&String> = modules.iter().flat_map(|m| &m.toml.prune.drop_kernel_modules).collect();
    let dep_text = std::fs::read_to_string(moddir.join("modules.dep")).ctx(STEP, &moddir)?;
    let deps = DepTable::parse(&dep_text, "");
    let dropped = |rel: &str| {
        let rel = rel.strip_prefix("kernel/").unwrap_or(rel);
        drop.iter().any(|d| match d.strip_suffix('*') {
            Some(prefix) => rel.starts_with(prefix),
            None => rel == d.as_str() || rel.starts_with(&format!("{}/", d.trim_end_matches('/'))),
        })
    };
    let kept: Vec<&str> = deps.names().filter(|n| deps.path(n).is_some_and(|p| !dropped(p))).collect();
    let (needed, _) = deps.load_order(kept.iter().copied());
    let needed: std::collections::HashSet<String> = needed.into_iter().collect();
    let mut removed = 0;
    for name in deps.names() {
        if !needed.contains(name) {
            let p = moddir.join(deps.path(name).unwrap_or_default());
            std::fs::remove_file(&p).ctx(STEP, &p)?;
            removed += 1;
        }
    }
    let compressed: Vec<PathBuf> = util::walk(&moddir)
        .ctx(STEP, &moddir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "xz"))
        .collect();
    for chunk in compressed.chunks(400) {
        util::output(STEP, Command::new("xz").args(["--decompress", "--threads=0", "--"]).args(chunk))?;
    }
    Ok((removed, needed.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_fix() {
        assert!(mmdebstrap_hint(
            "E: Failed to fetch http://deb.debian.org/x  Temporary failure resolving 'deb.debian.org'",
            "http://m"
        )
        .contains("check the network"));
        assert!(mmdebstrap_hint("E: Unable to locate package dockr.io", "m").contains("module.toml"));
    }

    #[test]
    fn glob_expands_within_components() {
        let dir = std::env::temp_dir().join(format!("lw-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("usr/share/doc/a")).unwrap();
        std::fs::create_dir_all(dir.join("usr/share/doc/b")).unwrap();
        std::fs::write(dir.join("usr/share/doc/a/copyright"), "").unwrap();
        std::fs::write(dir.join("usr/share/doc/a/README"), "").unwrap();
        let got = glob(&dir, "usr/share/doc/*/READ*");
        assert_eq!(got, vec![dir.join("usr/share/doc/a/README")]);
        assert_eq!(glob(&dir, "usr/share/doc/*").len(), 2);
        assert!(glob(&dir, "nope/*").is_empty());
        assert_eq!(glob(&dir, "**/copyright"), vec![dir.join("usr/share/doc/a/copyright")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
