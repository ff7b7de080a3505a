//! The system assembled inside the image, before any service: drivers, RAM mounts,
//! persistence and the overlays. When `assemble` returns, /etc, /home, /root and /var/www
//! are the user's.

use crate::cmdline::{Options, PersistenceMode};
use crate::config::{self, InitConfig};
use crate::mounts::{self, MountError};
use crate::persist::{self, claim, decide, mount as pmount, scan, Plan};
use crate::{coldplug, command, kmod, layout, logger, sandbox, stage1};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lightwhale_types::constants::VOLATILE_DIR as VOLATILE_BASE;
const MKE2FS: &str = "/usr/sbin/mke2fs";
const E2FSCK: &str = "/usr/sbin/e2fsck";

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("reading the init configuration: {0}")]
    Config(#[from] config::LoadError),
    #[error("kernel modules: {0}")]
    Modules(#[from] kmod::ModuleError),
    #[error("{0}")]
    Mount(#[from] MountError),
    #[error("persistence: {0}")]
    Persist(#[from] pmount::MountError),
}

pub use crate::facts::Persistence;

/// What stage 2 needs of the assembled system.
pub struct System {
    pub config: InitConfig,
    pub loader: kmod::Loader,
    pub persistence: Persistence,
    /// The image's own /etc/shadow, read before the overlays hide it (password.rs).
    pub image_shadow: String,
}

fn load_filesystem_modules(loader: &kmod::Loader, names: &[String]) {
    let step = logger::Step::start("filesystem modules");
    let (loaded, errors) = loader.load(names.iter().map(String::as_str));
    for e in errors {
        log::warn!("{e}");
    }
    step.done(&format!("{} loaded", if loaded.is_empty() { "none".to_string() } else { loaded.join(" ") }));
}

fn settle_drivers(loader: &kmod::Loader, config: &InitConfig, opts: &Options) {
    let step = logger::Step::start("drivers loaded");
    let settled = coldplug::settle(loader, Path::new("/sys"), &config.kernel_modules.deny, opts.settle);
    log::debug!("coldplug loaded: {}", settled.loaded.join(" "));
    if settled.timed_out {
        let pending = coldplug::pending_scsi_disks(Path::new("/sys"));
        log::warn!(
            "block devices were still appearing after {:.1} s (lightwhale.settle={}){}; continuing",
            settled.waited.as_secs_f64(),
            opts.settle.as_secs_f64(),
            if pending.is_empty() {
                String::new()
            } else {
                format!(", disks without a driver yet: SCSI {}", pending.join(" "))
            }
        );
    }
    step.done(&format!(
        "{} modules; waited {:.1} s for block devices{}: {}",
        settled.loaded.len(),
        settled.waited.as_secs_f64(),
        if settled.usb_storage { " (USB storage present)" } else { "" },
        if settled.block_devices.is_empty() { "none".to_string() } else { settled.block_devices.join(" ") }
    ));
}

pub fn assemble(opts: &Options) -> Result<System, SystemError> {
    let config = config::load(Path::new(config::CONFIG_DIR))?;

    let loader = kmod::Loader::open(&Path::new("/lib/modules").join(stage1::kernel_release()))?;
    // The filesystem modules (ext4 alone takes half a second to insert under emulation) load
    // on their own thread while the drivers settle, which is mostly waiting: nothing needs
    // them before the volatile mounts, which therefore come after coldplug.
    std::thread::scope(|s| {
        let fs = s.spawn(|| load_filesystem_modules(&loader, &config.kernel_modules.load));
        settle_drivers(&loader, &config, opts);
        if fs.join().is_err() {
            log::error!("loading the filesystem modules panicked; mounts that need them will fail");
        }
    });

    let step = logger::Step::start("volatile mounts");
    for s in layout::volatile(&config.filesystems, Path::new(VOLATILE_BASE)) {
        mounts::apply(&s)?;
    }
    step.done(&format!(
        "{} and {} writable in RAM",
        config.filesystems.tmpfs.join(" "),
        config.filesystems.volatile.join(" ")
    ));

    let step = logger::Step::start("persistence ready");
    let (persistence, reports) = persistence(opts)?;
    step.done(&match &persistence {
        Persistence::Device { device, claimed, uuid } => format!(
            "{device} (ext4 {uuid}) mounted at {}{}",
            persist::MOUNT_POINT,
            if *claimed { ", newly claimed" } else { "" }
        ),
        Persistence::Tmpfs { reason } => format!("tmpfs at {} ({reason})", persist::MOUNT_POINT),
        Persistence::Failed { device, .. } => format!("tmpfs at {} because {device} failed", persist::MOUNT_POINT),
    });
    if let Err(e) = crate::facts::write(crate::facts::PERSISTENCE, &persistence) {
        log::warn!("writing {}: {e}", crate::facts::PERSISTENCE);
    }

    let image_shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let step = logger::Step::start("overlays mounted");
    let data = Path::new(persist::MOUNT_POINT);
    mounts::mkdir_p(&layout::docker_root(data))?;
    for s in layout::persisted(&config.filesystems, data) {
        mounts::apply(&s)?;
    }
    step.done(&config.filesystems.persisted.join(" "));

    let on_disk = matches!(persistence, Persistence::Device { .. });
    match crate::logs::prepare(data, on_disk) {
        Ok(place) => {
            let log = crate::logs::path(Path::new(crate::logs::LOG_DIR), crate::logs::INIT_LOG);
            if let Err(e) = crate::logger::attach_file(log) {
                log::warn!("logs: cannot write the init's log: {e}");
            }
            log::info!(
                "logs: in {} ({})",
                crate::logs::LOG_DIR,
                if place == crate::logs::Place::Disk {
                    "on the persistence disk, kept for the next boot"
                } else {
                    "in RAM"
                }
            );
        }
        Err(e) => log::warn!("logs: could not put the logs on the persistence disk: {e}; they stay in RAM"),
    }
    // The seed is applied to the persisted /etc, before any service reads it.
    crate::nocloud::provision(opts, &reports, &config, &loader);
    Ok(System { config, loader, persistence, image_shadow })
}

/// Persistence for this boot, and the scan's reports (the NoCloud seed is found in them).
fn persistence(opts: &Options) -> Result<(Persistence, Vec<persist::DeviceReport>), SystemError> {
    let target = Path::new(persist::MOUNT_POINT);
    // lightwhale.persistence=tmpfs ignores devices for persistence; the scan still runs
    // (it only reads) when a seed may be wanted.
    let reports = if opts.persistence == PersistenceMode::Tmpfs && !opts.nocloud {
        Vec::new()
    } else {
        match scan_sandboxed() {
            Ok(r) => r,
            Err(e) if opts.persistence == PersistenceMode::Tmpfs => {
                log::error!("the device scan failed: {e}");
                Vec::new()
            }
            Err(e) => {
                log::error!("the device scan failed, persistence is OFF for this boot: {e}");
                pmount::mount_tmpfs(target)?;
                return Ok((Persistence::Tmpfs { reason: format!("scan failed: {e}") }, Vec::new()));
            }
        }
    };
    let persistence = persistence_from(opts, &reports, target)?;
    Ok((persistence, reports))
}

fn persistence_from(
    opts: &Options,
    reports: &[persist::DeviceReport],
    target: &Path,
) -> Result<Persistence, SystemError> {
    for r in reports {
        log::info!("scan: {}", describe(r));
    }
    let decision = decide(opts.persistence, reports);
    for n in &decision.notes {
        log::info!("persistence: {n}");
    }
    for w in &decision.warnings {
        log::warn!("persistence: {w}");
    }
    match decision.plan {
        Plan::Tmpfs => {
            pmount::mount_tmpfs(target)?;
            let reason = if opts.persistence == PersistenceMode::Tmpfs {
                "lightwhale.persistence=tmpfs"
            } else {
                "no persistence device"
            };
            Ok(Persistence::Tmpfs { reason: reason.into() })
        }
        Plan::Claim { disk } => {
            let step = logger::Step::start("claim");
            log::info!("claim {disk}: the magic header asks for this disk to be formatted; claiming it now");
            let paths = claim::Paths { dev: Path::new("/dev"), sys_class_block: Path::new("/sys/class/block") };
            let mkfs = |part: &Path| {
                let p = part.to_string_lossy();
                command::run(
                    Path::new(MKE2FS),
                    &["-q", "-F", "-t", "ext4", "-L", decide::LABEL, "-E", "lazy_itable_init=1", &p],
                )
                .map(|_| ())
                .map_err(|e| e.to_string())
            };
            match claim::claim(&disk, &paths, &mkfs, random_bytes()) {
                Ok(part) => {
                    step.done(&format!("claimed {disk}: {part} is ext4 labelled {}", decide::LABEL));
                    mount_device(&part, false, target, true)
                }
                Err(e) => {
                    log::error!("{e}");
                    log::error!("persistence is OFF for this boot; the header is still on {disk}, so the claim is retried at the next boot");
                    pmount::mount_tmpfs(target)?;
                    Ok(Persistence::Failed { device: disk, error: e.to_string() })
                }
            }
        }
        Plan::Mount { device, fsck } => mount_device(&device, fsck, target, false),
    }
}

fn mount_device(device: &str, fsck: bool, target: &Path, claimed: bool) -> Result<Persistence, SystemError> {
    let dev_path = PathBuf::from("/dev").join(device);
    let result = (|| {
        if fsck {
            log::info!("persistence: {device} was not cleanly unmounted; running e2fsck -p");
            let out = pmount::fsck(Path::new(E2FSCK), &dev_path)?;
            log::info!("persistence: e2fsck: {}", out.lines().last().unwrap_or("done"));
        }
        pmount::mount_ext4(&dev_path, target)
    })();
    match result {
        Ok(()) => Ok(Persistence::Device { device: device.into(), claimed, uuid: fs_uuid(&dev_path) }),
        Err(e) => {
            for line in [
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!".to_string(),
                format!("PERSISTENCE DEVICE {device} COULD NOT BE MOUNTED: {e}"),
                "Booting with RAM-only persistence: changes made now are LOST at power-off.".to_string(),
                format!("{device} was not formatted or written. Repair it (e2fsck) or replace it."),
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!".to_string(),
            ] {
                log::error!("{line}");
            }
            pmount::mount_tmpfs(target)?;
            Ok(Persistence::Failed { device: device.into(), error: e.to_string() })
        }
    }
}

/// The filesystem UUID, read back from the superblock after mounting.
fn fs_uuid(dev: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let _ = std::fs::File::open(dev).and_then(|f| f.take(persist::ext4::SUPERBLOCK_END as u64).read_to_end(&mut head));
    persist::ext4::parse(&head).map(|sb| sb.uuid_string()).unwrap_or_else(|| "unknown".into())
}

/// The scan in its sandbox, then the answer checked: every device name must be one PID 1
/// itself sees in /sys/class/block, because the names are joined onto /dev and acted on.
fn scan_sandboxed() -> Result<Vec<persist::DeviceReport>, ScanFailed> {
    let sandbox = sandbox::probe_sandbox(&["/dev", "/sys"]).map_err(|e| ScanFailed(e.to_string()))?;
    let sys = Path::new("/sys/class/block");
    let reports = sandbox::run("device scan", &sandbox, Duration::from_secs(30), || {
        scan::scan_all(sys, Path::new("/dev")).map_err(|e| e.to_string())
    })
    .map_err(|e| ScanFailed(e.to_string()))?;
    let known = scan::list(sys).map_err(|e| ScanFailed(e.to_string()))?;
    let known: Vec<String> = known.into_iter().map(|d| d.name).collect();
    scan::validate(&reports, &known).map_err(|e| ScanFailed(format!("the device scan's answer was rejected: {e}")))?;
    Ok(reports)
}

#[derive(Debug)]
struct ScanFailed(String);

impl std::fmt::Display for ScanFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn describe(r: &persist::DeviceReport) -> String {
    let mut s = format!("{} {} MiB", r.name, r.size_bytes >> 20);
    if let Some(p) = &r.parent {
        s.push_str(&format!(" (partition of {p})"));
    }
    if r.read_only {
        s.push_str(" read-only");
    }
    if r.magic {
        s.push_str(", magic header");
    }
    if r.image.is_image() && r.seed.is_none() {
        s.push_str(&format!(", boot image {:?}", r.image));
    }
    if let Some(sb) = &r.ext4 {
        s.push_str(&format!(", ext4 label {:?}", sb.label));
    }
    if let Some(fs) = r.seed {
        s.push_str(&format!(", cidata seed ({})", fs.fstype()));
    }
    s
}

fn random_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    // GRND_INSECURE: GUIDs need uniqueness, not secrecy, and must not block early in boot.
    // SAFETY: buf is a valid, writable buffer of the given length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0x0004) };
    if n != buf.len() as isize {
        let t = logger::uptime().to_bits().to_le_bytes();
        buf[..8].copy_from_slice(&t);
        buf[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    buf
}
