//! The image tree: Debian trixie packages installed by mmdebstrap (with a package cache
//! outside the checkout), then each module's files, users and init configuration, then
//! pruning. The result is squashed into rootfs.squashfs.

use super::Ctx;
use crate::error::{Error, IoContext, Result};
use lightwhale_image::cmd;
use lightwhale_image::install::{self, BuildPath};
use lightwhale_image::manifest::{self as modules, Module};
use lightwhale_image::progress::Step;
use lightwhale_image::{firmware, kmods, tree as ftree, users};
use std::path::{Path, PathBuf};
use std::process::Command;

/// This file's own text is part of the staleness key: changing the recipe rebuilds.
pub const RECIPE: &str = include_str!("rootfs.rs");

const STEP: &str = "rootfs";

pub struct Rootfs {
    pub kernel_release: String,
}

pub fn build(ctx: &Ctx, modules: &[Module]) -> Result<Rootfs> {
    let tree = ctx.build.join("rootfs");
    ftree::remove_tree(&tree)?;
    let made = mmdebstrap(ctx, modules, &tree);
    // A failed mmdebstrap can leave its bind mounts behind; never leave them mounted.
    ftree::unmount_below(&tree);
    made?;
    let kernel_release = customize(ctx, modules, &tree)?;
    Ok(Rootfs { kernel_release })
}

fn mmdebstrap(ctx: &Ctx, modules: &[Module], tree: &Path) -> Result<()> {
    let packages = modules::debian_packages(modules);
    let components: Vec<String> =
        std::iter::once("main".to_string()).chain(modules::debian_components(modules)).collect();
    let step = Step::start(format!(
        "rootfs: installing {} Debian {} packages and their dependencies (mmdebstrap)",
        packages.len(),
        ctx.suite
    ));
    let debs = ctx.cache.debs();
    let lists = super::package_lists(ctx, modules);
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
        .arg(format!("--components={}", components.join(",")))
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
    cmd::run_logged(
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
        cmd::output(
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
    Ok(cmd::output(STEP, Command::new("chroot").arg(tree).args(args).env("SOURCE_DATE_EPOCH", ctx.epoch.to_string()))?)
}

/// Everything after the packages: module files, users, configuration, pruning, kernel.
fn customize(ctx: &Ctx, modules: &[Module], tree: &Path) -> Result<String> {
    let step = Step::ticking("rootfs: adding module files, users and init configuration");
    step.phase("module files");
    install::module_files(tree, modules, BuildPath::Debian)?;

    // Debian's packages created the system accounts; the same code makes them on Nix.
    step.phase("users and groups");
    users::apply(
        tree,
        &modules::all(modules, |m| &m.groups),
        &modules::all(modules, |m| &m.system_users),
        &modules::all(modules, |m| &m.users),
        ctx.epoch,
    )?;

    let release = install::release_text(&ctx.version, &ctx.build_id, ctx.epoch, ("DEBIAN_SUITE", &ctx.suite));
    install::write_release(tree, &release)?;

    step.phase("package manifest");
    let manifest = chroot(ctx, tree, &["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"])?;
    install::write(tree, "usr/share/lightwhale/manifest", &manifest)?;

    let kernel_release = kernel_release(tree)?;
    std::fs::copy(tree.join(format!("boot/vmlinuz-{kernel_release}")), ctx.build.join("vmlinuz"))
        .ctx(STEP, tree.join("boot"))?;

    step.phase("pruning paths and setuid bits");
    install::remove_machine_state(tree)?;
    let mut pruned = 0;
    for p in modules.iter().flat_map(|m| &m.toml.prune.paths) {
        pruned += ftree::remove_glob(tree, p)?;
    }
    let stripped = ftree::strip_setuid(tree, &modules::all(modules, |m| &m.prune.keep_setuid))?;
    let moddir = tree.join("usr/lib/modules").join(&kernel_release);
    step.phase("pruning and decompressing kernel modules");
    let k = kmods::prune(
        &moddir,
        &modules::all(modules, |m| &m.prune.drop_kernel_modules),
        &modules::all(modules, |m| &m.prune.require_kernel_modules),
    )?;
    // Debian signs every module, and under Secure Boot the kernel loads no other: the
    // decompressed modules must still end in their signature.
    if let Some(p) = kmods::unsigned(&moddir)?.first() {
        return Err(Error::Step {
            step: STEP,
            message: format!(
                "{} has lost its module signature (it would not load under Secure Boot): check what in the build rewrites modules",
                p.display()
            ),
        });
    }
    step.phase("depmod");
    kmods::depmod(tree, &kernel_release)?;
    step.phase("firmware the kept drivers ask for");
    let fw = firmware::prune_in_place(tree, &kernel_release, &firmware::Rules::from_modules(modules)?)?;
    step.done(&format!(
        "kernel {kernel_release} ({} modules kept, {} of them signed, {} dropped), firmware {} files ({:.1} MB, {:.1} MB stored; {} skipped), {} packages, {pruned} paths pruned, setuid/setgid removed from {}",
        k.kept,
        k.signed,
        k.dropped,
        fw.files,
        fw.bytes as f64 / 1e6,
        fw.stored_bytes as f64 / 1e6,
        fw.skipped,
        manifest.lines().count(),
        stripped.len()
    ));
    Ok(kernel_release)
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
}
