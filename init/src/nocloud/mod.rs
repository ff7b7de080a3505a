//! Headless first boot from a cloud-init NoCloud seed: a small filesystem labelled `cidata`
//! (ISO 9660 or vfat) holding `meta-data`, `user-data` (#cloud-config) and optionally
//! `network-config`. Found by the persistence scan, mounted read-only, parsed in a
//! sandboxed child, and applied by PID 1 once per instance-id, before any service starts.
//!
//! What a seed says and does is `lightwhale_nocloud`'s; this module finds the seed (`seed`),
//! mounts it, has the sandboxed child read it, and applies it once per instance-id.

pub mod seed;

#[cfg(test)]
mod tests;

use crate::cmdline::Options;
use crate::config::InitConfig;
use crate::kernel::kmod;
use crate::logging::console;
use crate::persist::DeviceReport;
use crate::sandbox;
use lightwhale_nocloud::{apply, nics, parse, plan, should_apply, SeedInfo, Status, MARKER, SEED_ANSWER_LIMIT};
use nix::mount::{umount2, MntFlags, MsFlags};
use std::path::Path;
use std::time::Duration;

/// What happened, for `lightwhale status` (JSON, see `Status`).
pub use lightwhale_types::constants::NOCLOUD_FACTS as STATUS_FILE;
/// Where the seed is mounted while the child reads it.
pub use lightwhale_types::constants::SEED_DIR;

/// Finds, reads and applies the seed; never fails the boot. Writes STATUS_FILE.
pub fn provision(opts: &Options, reports: &[DeviceReport], config: &InitConfig, loader: &kmod::Loader) -> Status {
    let status = run(opts, reports, config, loader);
    if let Err(e) = crate::facts::write(STATUS_FILE, &status) {
        log::warn!("nocloud: writing {STATUS_FILE}: {e}");
    }
    status
}

fn run(opts: &Options, reports: &[DeviceReport], config: &InitConfig, loader: &kmod::Loader) -> Status {
    let mut status = Status::default();
    let choice = seed::choose(reports);
    for n in &choice.notes {
        log::info!("nocloud: {n}");
    }
    for w in &choice.warnings {
        log::warn!("nocloud: {w}");
    }
    let Some((device, fs)) = choice.seed else {
        status.skipped = Some("no seed (no filesystem labelled cidata)".into());
        return status;
    };
    status.seed = Some(SeedInfo { device: device.clone(), filesystem: fs.fstype().into() });
    if !opts.nocloud {
        log::info!("nocloud: lightwhale.nocloud=off: the seed on {device} is ignored");
        status.skipped = Some("lightwhale.nocloud=off".into());
        return status;
    }
    let step = console::Step::start("nocloud seed");
    let parsed = match read(&device, fs, loader) {
        Ok(p) => p,
        Err(e) => {
            log::error!("nocloud: {e}; the boot goes on without the seed");
            status.errors.push(e.to_string());
            status.skipped = Some("the seed could not be read".into());
            return status;
        }
    };
    status.instance_id = Some(parsed.instance_id.clone());
    status.unknown_keys = parsed.unknown_keys.clone();
    status.refused = parsed.refused.clone();
    status.errors = parsed.errors.clone();
    let marker = std::fs::read_to_string(MARKER).ok();
    if !should_apply(marker.as_deref(), &parsed.instance_id) {
        step.done(&format!("{device}: instance {} was applied on an earlier boot; nothing to do", parsed.instance_id));
        status.skipped = Some(format!("instance {} was applied on an earlier boot", parsed.instance_id));
        return status;
    }
    log::info!(
        "nocloud: seed on {device} ({}), instance-id {}{}",
        fs.fstype(),
        parsed.instance_id,
        if parsed.instance_id_from_content { " (meta-data names none: derived from the seed's contents)" } else { "" }
    );
    for e in &parsed.errors {
        log::error!("nocloud: {e}; the boot goes on without it");
    }
    for r in &parsed.refused {
        log::warn!("nocloud: {} refused: {}", r.what, r.why);
    }
    if !parsed.unknown_keys.is_empty() {
        log::warn!("nocloud: not supported, ignored: {}", parsed.unknown_keys.join(", "));
    }
    let root = apply::Root { dir: Path::new("/") };
    let data_root = crate::persist::MOUNT_POINT;
    let plan = plan::plan(
        &parsed,
        &plan::Env {
            accounts: &apply::read_accounts(&root),
            filesystems: &config.filesystems,
            data_root,
            hosts: &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            dhcpcd: &std::fs::read_to_string("/etc/dhcpcd.conf").unwrap_or_default(),
            nics: &nics(Path::new("/sys/class/net")),
            lastchg: days_since_epoch(),
        },
    );
    for r in &plan.refused {
        log::warn!("nocloud: {} refused: {}", r.what, r.why);
    }
    let mut errors = plan.errors.clone();
    errors.extend(apply::apply(&plan, &root, &config.filesystems, data_root));
    for e in &errors {
        log::error!("nocloud: {e}");
    }
    for d in &plan.done {
        log::info!("nocloud: {d}");
    }
    if let Err(e) = std::fs::create_dir_all(Path::new(MARKER).parent().unwrap_or(Path::new("/")))
        .and_then(|_| std::fs::write(MARKER, format!("{}\n", parsed.instance_id)))
    {
        log::error!(
            "nocloud: recording the instance in {MARKER}: {e}; the seed will be applied again at the next boot"
        );
    }
    status.refused.extend(plan.refused);
    status.errors.extend(errors);
    status.done = plan.done;
    status.applied = true;
    step.done(&format!(
        "{device}: instance {} applied ({} changes, {} refused, {} errors)",
        parsed.instance_id,
        status.done.len(),
        status.refused.len(),
        status.errors.len()
    ));
    status
}

/// Mounts the seed read-only, has the sandboxed child read and parse it, unmounts it.
/// Why the seed could not be read; the boot goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("creating {SEED_DIR}: {0}")]
    MountPoint(std::io::Error),
    #[error("mounting the seed {device} ({fstype}) read-only: {source}")]
    Mount { device: String, fstype: &'static str, source: nix::Error },
    #[error(transparent)]
    ReaderSandbox(#[from] crate::sandbox::seccomp::SeccompError),
    #[error(transparent)]
    Reader(#[from] sandbox::SandboxError),
}

fn read(device: &str, fs: seed::SeedFs, loader: &kmod::Loader) -> Result<parse::Parsed, ReadError> {
    let modules: &[&str] = match fs {
        seed::SeedFs::Iso9660 => &["isofs"],
        // vfat's default code page and character set come as modules too.
        seed::SeedFs::Vfat => &["vfat", "nls_cp437", "nls_ascii", "nls_utf8"],
    };
    let (_, errs) = loader.load(modules.iter().copied());
    for e in errs {
        log::debug!("nocloud: {e}");
    }
    let dir = Path::new(SEED_DIR);
    std::fs::create_dir_all(dir).map_err(ReadError::MountPoint)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let dev = Path::new("/dev").join(device);
    nix::mount::mount(Some(&dev), dir, Some(fs.fstype()), flags, None::<&str>).map_err(|source| ReadError::Mount {
        device: dev.display().to_string(),
        fstype: fs.fstype(),
        source,
    })?;
    let parsed = sandbox::probe_sandbox(&[SEED_DIR])
        .map_err(ReadError::from)
        .and_then(|sb| read_sandboxed(dir, &sb).map_err(ReadError::from));
    if let Err(e) = umount2(dir, MntFlags::MNT_DETACH) {
        log::warn!("nocloud: unmounting {SEED_DIR}: {e}");
    }
    parsed
}

/// Reads and parses the seed in `dir` in a child restricted by `sandbox`.
pub fn read_sandboxed(dir: &Path, sandbox: &sandbox::Sandbox) -> Result<parse::Parsed, sandbox::SandboxError> {
    sandbox::run_bounded("seed parser", sandbox, Duration::from_secs(30), SEED_ANSWER_LIMIT, || {
        Ok(parse::read_seed(dir, &mut parse::random_salt))
    })
}

/// What the boot would make of a seed: the parser's and the plan's findings together.
fn days_since_epoch() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
}
