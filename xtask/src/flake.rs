//! The flake, evaluated as far as our machines allow: nixpkgs cannot be fetched here, so
//! `nix flake show` and `nix flake check --no-build` run with the nixpkgs input replaced by
//! nix/stand-in-nixpkgs, under Debian 13's Nix (2.26; Debian 12's 2.8 is too old for
//! flakes) in a trixie chroot made with mmdebstrap and kept in the package cache.
//! Also here, because the same chroot has squashfs-tools 4.6 (the host's 4.5 lacks
//! `-pseudo-override`): the Nix path's squashfs step on a small tree.

use crate::build::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::util::Step;
use lightwhale_image::cmd;
use std::path::{Path, PathBuf};
use std::process::Command;

const STEP: &str = "flake";
/// What the chroot holds; changing it makes a new chroot.
const PACKAGES: &str = "nix-bin,ca-certificates,git,squashfs-tools";
const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nbuild-users-group =\n";
const STAND_IN: &str = "path:./nix/stand-in-nixpkgs";

fn chroot_dir(ctx: &Ctx) -> PathBuf {
    ctx.cache.nix_chroot(&ctx.suite)
}

/// A trixie chroot with Nix 2.26, made once (about a minute) and reused.
fn ensure_chroot(ctx: &Ctx) -> Result<PathBuf> {
    let dir = chroot_dir(ctx);
    let marker = dir.join(".lightwhale-ready");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == PACKAGES) {
        return Ok(dir);
    }
    let step = Step::start(format!("flake: a {} chroot with Nix (mmdebstrap, once)", ctx.suite));
    lightwhale_image::tree::remove_tree(&dir)?;
    let log = ctx.cache.nix_chroot_log();
    std::fs::create_dir_all(ctx.cache.root()).ctx(STEP, ctx.cache.root())?;
    cmd::run_logged(
        STEP,
        Command::new("mmdebstrap")
            .args(["--variant=apt", "--mode=root", &format!("--include={PACKAGES}")])
            .arg(&ctx.suite)
            .arg(&dir)
            .arg(&ctx.mirror),
        &log,
        |l| l.starts_with("I: "),
        |text| crate::build::rootfs::mmdebstrap_hint(text, &ctx.mirror),
    )?;
    std::fs::write(&marker, PACKAGES).ctx(STEP, &marker)?;
    step.done(&dir.display().to_string());
    Ok(dir)
}

/// Runs `script` with sh inside the chroot, with its own /proc (Nix needs it) that goes
/// away with the command.
fn in_chroot(root: &Path, script: &str) -> Result<String> {
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork"])
        .arg(format!("--mount-proc={}", root.join("proc").display()))
        .arg("chroot")
        .arg(root)
        .args(["sh", "-c", script])
        // The chroot is a machine of its own: nothing of the host's environment (its
        // caches, Nix state directories) leaks in.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("HOME", "/root")
        .output()
        .map_err(|source| Error::Spawn { step: STEP, program: "unshare".into(), source })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(Error::Step { step: STEP, message: format!("`{script}` failed in {}:\n{text}", root.display()) });
    }
    Ok(text)
}

/// The repository's files as git sees them (tracked, and new files not ignored), copied
/// into the chroot and committed there: a flake only sees files git knows.
fn copy_sources(ctx: &Ctx, root: &Path) -> Result<&'static str> {
    let src = root.join("src");
    lightwhale_image::tree::remove_tree(&src)?;
    std::fs::create_dir_all(&src).ctx(STEP, &src)?;
    let list = cmd::output(
        STEP,
        Command::new("git").current_dir(&ctx.root).args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ]),
    )?;
    for rel in list.split('\0').filter(|r| !r.is_empty()) {
        let from = ctx.root.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&from) else { continue }; // deleted, not yet committed
        let to = src.join(rel);
        std::fs::create_dir_all(to.parent().unwrap_or(&src)).ctx(STEP, &to)?;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).ctx(STEP, &from)?, &to).ctx(STEP, &to)?;
        } else {
            std::fs::copy(&from, &to).ctx(STEP, &to)?;
        }
    }
    in_chroot(
        root,
        "cd /src && git init -q && git add -A && git -c user.name=lightwhale -c user.email=ci@localhost commit -q -m sources",
    )?;
    Ok("/src")
}

fn flake_cmd(dir: &str, args: &str) -> String {
    format!("cd {dir} && nix {args} --override-input nixpkgs {STAND_IN} --no-write-lock-file")
}

/// The Nix path's squashfs step, with mksquashfs 4.6 from the chroot: owners from the
/// pseudo file must win over -all-root, and sudo must come out setuid.
fn squashfs_with_pseudo_file(ctx: &Ctx, root: &Path) -> Result<()> {
    let work = root.join("tmp/lightwhale-pseudo");
    lightwhale_image::tree::remove_tree(&work)?;
    for d in ["tree/home/op", "tree/usr/bin", "out"] {
        std::fs::create_dir_all(work.join(d)).ctx(STEP, &work)?;
    }
    std::fs::write(work.join("tree/home/op/.profile"), "PATH=/usr/bin\n").ctx(STEP, &work)?;
    std::fs::write(work.join("tree/usr/bin/sudo"), "not really sudo\n").ctx(STEP, &work)?;
    std::fs::write(
        work.join("pseudo"),
        "home/op m 700 1000 1000\nhome/op/.profile m 644 1000 1000\nusr/bin/sudo m 4755 0 0\n",
    )
    .ctx(STEP, &work)?;
    let mkimage = ctx.root.join("target/debug/lightwhale-mkimage");
    cmd::run(
        STEP,
        Command::new(env!("CARGO")).current_dir(&ctx.root).args(["build", "--quiet", "-p", "lightwhale-image"]),
        "building lightwhale-mkimage failed",
    )?;
    std::fs::copy(&mkimage, work.join("lightwhale-mkimage")).ctx(STEP, &mkimage)?;
    let listing = in_chroot(
        root,
        "cd /tmp/lightwhale-pseudo && ./lightwhale-mkimage --epoch 1 squashfs --tree tree --out-dir out --pseudo-file pseudo --all-root >/dev/null && unsquashfs -lln out/rootfs.squashfs",
    )?;
    let want = [
        ("drwx------ 1000/1000", "squashfs-root/home/op"),
        ("-rw-r--r-- 1000/1000", "squashfs-root/home/op/.profile"),
        ("-rwsr-xr-x 0/0", "squashfs-root/usr/bin/sudo"),
        ("drwxr-xr-x 0/0", "squashfs-root/usr"),
    ];
    for (attrs, path) in want {
        if !listing.lines().any(|l| l.starts_with(attrs) && l.ends_with(path)) {
            return Err(Error::Step {
                step: STEP,
                message: format!("the Nix path's squashfs has no `{attrs} ... {path}`:\n{listing}"),
            });
        }
    }
    lightwhale_image::tree::remove_tree(&work)?;
    Ok(())
}

pub fn check(ctx: &Ctx) -> Result<()> {
    let root = ensure_chroot(ctx)?;
    let step = Step::ticking("flake: nix flake show and nix flake check --no-build against the nixpkgs stand-in");
    step.phase("copying the sources git knows into the chroot");
    let dir = copy_sources(ctx, &root)?;
    step.phase("nix flake show");
    let show = in_chroot(&root, &flake_cmd(dir, "flake show"))?;
    for output in ["iso", "rootfs", "initramfs", "kernel", "init", "mkimage", "unit-tests", "vm-tests", "qemu"] {
        if !show.contains(output) {
            return Err(Error::Step { step: STEP, message: format!("`nix flake show` lists no {output}:\n{show}") });
        }
    }
    step.phase("nix flake check --no-build");
    let checked = in_chroot(&root, &flake_cmd(dir, "flake check --no-build"))?;
    for output in [
        "packages.x86_64-linux.iso",
        "packages.x86_64-linux.rootfs",
        "checks.x86_64-linux.vm-tests",
        "checks.x86_64-linux.unit-tests",
        "devShells.x86_64-linux.default",
        "apps.x86_64-linux.qemu",
    ] {
        if !checked.contains(&format!("checking derivation {output}..."))
            && !checked.contains(&format!("checking app '{output}'"))
        {
            return Err(Error::Step {
                step: STEP,
                message: format!("`nix flake check` did not check {output}:\n{checked}"),
            });
        }
    }

    // The check must be able to fail: a package nixpkgs (here: the stand-in) lacks.
    step.phase("nix flake check of a module naming a package nixpkgs lacks (must fail)");
    let toml = root.join("src/modules/base/module.toml");
    let text = std::fs::read_to_string(&toml).ctx(STEP, &toml)?;
    let broken = text.replacen(
        "packages = [\n  \"bashInteractive\"",
        "packages = [\n  \"no-such-package\", \"bashInteractive\"",
        1,
    );
    if broken == text {
        return Err(Error::Step {
            step: STEP,
            message: "could not plant the unknown package in base/module.toml".into(),
        });
    }
    std::fs::write(&toml, broken).ctx(STEP, &toml)?;
    in_chroot(&root, "cd /src && git -c user.name=lightwhale -c user.email=ci@localhost commit -q -a -m broken")?;
    match in_chroot(&root, &flake_cmd(dir, "flake check --no-build")) {
        Err(Error::Step { message, .. }) if message.contains("no-such-package") => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::Step {
                step: STEP,
                message: "nix flake check accepted a module naming a package nixpkgs lacks".into(),
            })
        }
    }
    step.phase("the Nix path's squashfs step on a small tree");
    squashfs_with_pseudo_file(ctx, &root)?;
    step.done("all outputs evaluate; an unknown package fails the check; pseudo owners survive -all-root");
    Ok(())
}
