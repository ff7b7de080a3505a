//! `cargo xtask iso`: the Debian-path build, in stages that each skip themselves when
//! their inputs have not changed (a change to init/ only rebuilds the initramfs and ISO).

pub mod cache;
pub mod rootfs;
pub mod signed_boot;

use crate::error::{Error, IoContext, Result};
use crate::util::{self, Stamp};
use lightwhale_image::manifest::{self as modules, Module};
use lightwhale_image::progress::Step;
use lightwhale_image::{initramfs, iso, squashfs};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub struct Ctx {
    pub root: PathBuf,
    pub out: PathBuf,
    pub build: PathBuf,
    pub cache: cache::Cache,
    pub suite: String,
    pub mirror: String,
    pub epoch: u64,
    pub version: String,
    pub build_id: String,
}

impl Ctx {
    pub fn new(root: &Path) -> Ctx {
        Ctx::with_out(root, &root.join("out"))
    }

    /// Same sources and cache, artefacts under `out` (the reproducibility check builds a
    /// second copy this way).
    pub fn with_out(root: &Path, out: &Path) -> Ctx {
        let out = out.to_path_buf();
        let epoch = source_date_epoch(root);
        Ctx {
            root: root.to_path_buf(),
            build: out.join("build"),
            out,
            cache: cache::Cache::from_env(),
            suite: std::env::var("LIGHTWHALE_SUITE").unwrap_or_else(|_| "trixie".into()),
            mirror: std::env::var("LIGHTWHALE_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into()),
            epoch,
            version: env!("CARGO_PKG_VERSION").into(),
            build_id: git(root, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// The cached package lists for these modules' archive components: the rootfs stage
/// fetches them, the steps after it read them.
pub fn package_lists(ctx: &Ctx, mods: &[Module]) -> PathBuf {
    ctx.cache.package_lists(&ctx.suite, &modules::debian_components(mods))
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// SOURCE_DATE_EPOCH if set, else the last commit's time: every timestamp in the image
/// comes from here, so the same sources give the same bytes.
fn source_date_epoch(root: &Path) -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .or_else(|| git(root, &["log", "-1", "--format=%ct"]).and_then(|s| s.parse().ok()))
        .unwrap_or(1_767_225_600)
}

pub struct Built {
    pub iso: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub rootfs_img: PathBuf,
}

#[derive(Default, Clone, Copy, clap::Args)]
pub struct Options {
    /// Fetch fresh package lists (security updates) instead of the cached ones.
    #[arg(long)]
    pub refresh: bool,
    /// Rebuild the root filesystem even when its inputs look unchanged.
    #[arg(long)]
    pub force: bool,
}

pub fn paths(ctx: &Ctx) -> Built {
    Built {
        iso: ctx.out.join("lightwhale.iso"),
        kernel: ctx.build.join("vmlinuz"),
        initramfs: ctx.build.join("initramfs.img"),
        rootfs_img: ctx.build.join("rootfs.img"),
    }
}

fn need_root() -> Result<()> {
    if !lightwhale_image::is_root() {
        return Err(Error::Step {
            step: "iso",
            message: "building the image needs root (mmdebstrap --mode=root, chroot): run `sudo cargo xtask iso`"
                .into(),
        });
    }
    Ok(())
}

/// The key of everything the rootfs stage (the tree) reads.
fn rootfs_key(ctx: &Ctx, opts: &Options, mods: &[Module]) -> Result<String> {
    let mut h = Sha256::new();
    let modules = ctx.root.join("modules");
    util::hash_tree(&modules, &mut h).ctx("rootfs", &modules)?;
    h.update(rootfs::RECIPE);
    h.update(lightwhale_image::users::RECIPE);
    h.update(lightwhale_image::users::ACCOUNTS_RECIPE);
    h.update(lightwhale_image::kmods::RECIPE);
    h.update(lightwhale_image::firmware::RECIPE);
    h.update(lightwhale_image::install::RECIPE);
    h.update(lightwhale_image::tree::RECIPE);
    h.update(format!("{} {} {} {}", ctx.suite, ctx.mirror, ctx.epoch, opts.refresh));
    // The cached package lists decide the package versions.
    let lists = package_lists(ctx, mods);
    if lists.join(".complete").exists() {
        if let Ok(rd) = std::fs::read_dir(&lists) {
            let mut names: Vec<PathBuf> =
                rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with("Release")).collect();
            names.sort();
            for n in names {
                h.update(std::fs::read(&n).unwrap_or_default());
            }
        }
    }
    Ok(util::hex(&h.finalize()))
}

/// Builds the static init with glibc (`+crt-static`): no musl target exists on our build
/// machines. Its own target dir keeps the host build cache intact.
pub fn init_bin(ctx: &Ctx, name: &str) -> PathBuf {
    ctx.root.join("target/init/x86_64-unknown-linux-gnu/release").join(name)
}

/// `cargo build --release` of one workspace package, statically linked: the binary then
/// runs on the image's glibc whatever the build host's is. Each package is built on its
/// own, so its dependencies' features (and its bytes) do not depend on the others.
/// Cargo's output goes to `out/build/cargo-<package>.log`; the console gets its latest line
/// while it compiles, and its last lines if it fails.
fn build_static(ctx: &Ctx, package: &str) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    std::fs::create_dir_all(&ctx.build).ctx("build", &ctx.build)?;
    lightwhale_image::cmd::run_logged(
        "build",
        Command::new(cargo)
            .current_dir(&ctx.root)
            .args(["build", "--release", "-p", package, "--target", "x86_64-unknown-linux-gnu"])
            .arg("--target-dir")
            .arg(ctx.root.join("target/init"))
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_TERM_PROGRESS_WHEN", "never"),
        &ctx.build.join(format!("cargo-{package}.log")),
        |_| false,
        |_| "Fix the compile error shown above.".into(),
    )?;
    Ok(())
}

pub fn build_init(ctx: &Ctx) -> Result<PathBuf> {
    let step = Step::start("init: static release build");
    build_static(ctx, "lightwhale-init")?;
    let bin = init_bin(ctx, "lightwhale-init");
    let size = std::fs::metadata(&bin).ctx("init", &bin)?.len();
    step.done(&format!("{} ({:.1} MB)", bin.display(), size as f64 / 1e6));
    Ok(bin)
}

/// The administrator's commands (tools/): every [[bin]] of its Cargo.toml, built static.
fn build_tools(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let step = Step::start("tools: static release build");
    let manifest = ctx.root.join("tools/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).ctx("tools", &manifest)?;
    let names: Vec<String> = toml::from_str::<toml::Value>(&text)
        .map_err(|e| Error::Step { step: "tools", message: format!("{}: {e}", manifest.display()) })?
        .get("bin")
        .and_then(|b| b.as_array())
        .map(|bins| bins.iter().filter_map(|b| b.get("name")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    build_static(ctx, "lightwhale-tools")?;
    let bins: Vec<PathBuf> = names.iter().map(|n| init_bin(ctx, n)).collect();
    step.done(&names.join(" "));
    Ok(bins)
}

/// Puts this build's own programs into the tree: the tools into /usr/bin, the modules'
/// workspace binaries where `install::workspace_binary_path` says. Those of an earlier
/// build are removed first, so a reused tree holds exactly this build's programs.
fn install_own_programs(ctx: &Ctx, tree: &Path, tools: &[PathBuf], bins: &[(String, PathBuf)]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let record = ctx.build.join("programs.installed");
    for old in std::fs::read_to_string(&record).unwrap_or_default().lines() {
        let _ = std::fs::remove_file(tree.join(old));
    }
    let tool_paths = tools.iter().map(|b| {
        let name = b.file_name().unwrap_or_default().to_string_lossy().into_owned();
        (format!("usr/bin/{name}"), b)
    });
    let bin_paths = bins.iter().map(|(name, b)| (lightwhale_image::install::workspace_binary_path(name), b));
    let mut installed = String::new();
    for (rel, built) in tool_paths.chain(bin_paths) {
        let dst = tree.join(&rel);
        std::fs::copy(built, &dst).ctx("programs", &dst)?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).ctx("programs", &dst)?;
        installed.push_str(&rel);
        installed.push('\n');
    }
    Ok(std::fs::write(&record, installed).ctx("programs", &record)?)
}

/// The modules' workspace binaries (module.toml `[workspace] binaries`), built like the
/// init (static, release) for the image's /usr/sbin.
pub fn build_workspace_binaries(ctx: &Ctx, mods: &[Module]) -> Result<Vec<(String, PathBuf)>> {
    let names = modules::all(mods, |m| &m.workspace.binaries);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let step = Step::start(format!("workspace binaries: static release build of {}", names.join(", ")));
    for n in &names {
        build_static(ctx, n)?;
    }
    let bins: Vec<(String, PathBuf)> = names.iter().map(|n| (n.clone(), init_bin(ctx, n))).collect();
    step.done(&bins.iter().map(|(_, p)| p.display().to_string()).collect::<Vec<_>>().join(" "));
    Ok(bins)
}

/// The initramfs with `init` as /init and the modules' stage 1 kernel modules.
fn build_initramfs(ctx: &Ctx, mods: &[Module], init: &Path, release: &str, out: &Path) -> Result<PathBuf> {
    let kernel_modules = modules::all(mods, |m| &m.initramfs.kernel_modules);
    Ok(initramfs::build(&initramfs::Initramfs {
        init,
        module_tree: &ctx.build.join("rootfs/usr/lib/modules").join(release),
        release,
        kernel_modules: &kernel_modules,
        epoch: ctx.epoch,
        out,
    })?)
}

/// The benchmark floor's initramfs: same modules, `lightwhale-floor` as /init.
pub fn floor_initramfs(ctx: &Ctx) -> Result<PathBuf> {
    let mods = modules::load(&ctx.root.join("modules"))?;
    let release_file = ctx.build.join("kernel-release");
    let release = std::fs::read_to_string(&release_file).ctx("floor", &release_file)?.trim().to_string();
    build_initramfs(ctx, &mods, &init_bin(ctx, "lightwhale-floor"), &release, &ctx.build.join("floor-initramfs.img"))
}

/// The ISO a booting command (`qemu`, `cluster`) uses: the existing one with `--no-build`
/// (an error naming `command` when there is none), else a fresh or reused build.
pub fn iso_to_boot(ctx: &Ctx, no_build: bool, command: &str) -> Result<PathBuf> {
    if !no_build {
        return Ok(iso(ctx, Options::default())?.iso);
    }
    let p = paths(ctx).iso;
    if !p.is_file() {
        return Err(Error::Usage(format!("{command}: {} does not exist; run without --no-build", p.display())));
    }
    Ok(p)
}

pub fn iso(ctx: &Ctx, opts: Options) -> Result<Built> {
    let start = Instant::now();
    std::fs::create_dir_all(&ctx.build).ctx("iso", &ctx.build)?;
    let mods = modules::load(&ctx.root.join("modules"))?;
    for m in &mods {
        println!("    module {}: {}", m.name, m.toml.description);
    }
    let init = build_init(ctx)?;
    let tools = build_tools(ctx)?;
    let bins = build_workspace_binaries(ctx, &mods)?;
    let p = paths(ctx);

    if opts.refresh {
        let _ = std::fs::remove_dir_all(package_lists(ctx, &mods));
    }
    let stamp = Stamp::new(ctx.build.join("rootfs.stamp"), rootfs_key(ctx, &opts, &mods)?);
    let tree = ctx.build.join("rootfs");
    let release_file = ctx.build.join("kernel-release");
    let release = if !opts.force && stamp.fresh() && tree.is_dir() && p.kernel.is_file() {
        println!("==> rootfs: unchanged since the last build, reused");
        std::fs::read_to_string(&release_file).ctx("rootfs", &release_file)?.trim().to_string()
    } else {
        need_root()?;
        stamp.clear();
        let r = rootfs::build(ctx, &mods)?;
        std::fs::write(&release_file, &r.kernel_release).ctx("rootfs", &release_file)?;
        // The rootfs key may have changed if this run fetched the package lists.
        Stamp::new(ctx.build.join("rootfs.stamp"), rootfs_key(ctx, &opts, &mods)?).write().ctx("rootfs", &ctx.build)?;
        r.kernel_release
    };

    // The squashfs: the tree, this build's own programs, the compression settings.
    let mut h = Sha256::new();
    h.update(std::fs::read_to_string(ctx.build.join("rootfs.stamp")).unwrap_or_default());
    for b in tools.iter().chain(bins.iter().map(|(_, b)| b)) {
        h.update(lightwhale_image::sha256_file(b).ctx("programs", b)?);
    }
    h.update(squashfs::RECIPE);
    h.update(squashfs::squashfs_opts().join(" "));
    let image_stamp = Stamp::new(ctx.build.join("squashfs.stamp"), util::hex(&h.finalize()));
    if image_stamp.fresh() && p.rootfs_img.is_file() {
        println!("==> squashfs: unchanged, reused");
    } else {
        // The tree holds root's files (/etc/shadow): reading it all needs root too.
        need_root()?;
        image_stamp.clear();
        install_own_programs(ctx, &tree, &tools, &bins)?;
        let sq = squashfs::build(&squashfs::Squashfs {
            tree: &tree,
            out: &ctx.build.join("rootfs.squashfs"),
            epoch: ctx.epoch,
            pseudo_file: None,
            all_root: false,
            log: &ctx.build.join("mksquashfs.log"),
        })?;
        squashfs::rootfs_img(&sq, &p.rootfs_img, ctx.epoch)?;
        image_stamp.write().ctx("squashfs", &ctx.build)?;
    }

    build_initramfs(ctx, &mods, &init, &release, &p.initramfs)?;
    let signed = signed_boot::fetch(ctx, &package_lists(ctx, &mods))?;

    let mut h = Sha256::new();
    for f in [&p.kernel, &p.initramfs, &p.rootfs_img, &signed.shim, &signed.grub, &signed.mok_manager] {
        h.update(lightwhale_image::sha256_file(f).ctx("iso", f)?);
    }
    h.update(iso::RECIPE);
    h.update(iso::CMDLINE);
    h.update(format!("{} {}", ctx.epoch, ctx.build_id));
    let iso_stamp = Stamp::new(ctx.build.join("iso.stamp"), util::hex(&h.finalize()));
    if iso_stamp.fresh() && p.iso.is_file() {
        println!("==> iso: unchanged, {} reused", p.iso.display());
    } else {
        iso::build(&iso::Inputs {
            kernel: &p.kernel,
            initramfs: &p.initramfs,
            rootfs_img: &p.rootfs_img,
            boot: &iso::BootFiles { efi: iso::EfiLoader::Signed(signed), ..iso::BootFiles::debian() },
            version: &ctx.version,
            build_id: &ctx.build_id,
            epoch: ctx.epoch,
            work_dir: &ctx.build,
            out: &p.iso,
        })?;
        iso_stamp.write().ctx("iso", &ctx.build)?;
    }
    println!("==> done in {:.1} s: {}", start.elapsed().as_secs_f64(), p.iso.display());
    Ok(p)
}
