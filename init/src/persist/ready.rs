//! Persistence for this boot: the device scan in its sandbox, the decision, then the claim,
//! the mount, or the tmpfs stand-in. A device that cannot be used leaves the boot on RAM with
//! a message that says so; only a failing tmpfs stops it.

use super::{claim, claim_partition, decide, ext4, mount, scan, DeviceReport, Plan, MOUNT_POINT};
use crate::cmdline::{Options, PersistenceMode};
use crate::facts::Persistence;
use crate::logging::console;
use crate::{command, sandbox};
use mount::MountError;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MKE2FS: &str = "/usr/sbin/mke2fs";
const E2FSCK: &str = "/usr/sbin/e2fsck";

fn system_paths() -> claim::Paths<'static> {
    claim::Paths { dev: Path::new("/dev"), sys_class_block: Path::new("/sys/class/block") }
}

/// Persistence for this boot, and the scan's reports (the NoCloud seed is found in them).
pub fn persistence(opts: &Options) -> Result<(Persistence, Vec<DeviceReport>), MountError> {
    let target = Path::new(MOUNT_POINT);
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
                mount::mount_tmpfs(target)?;
                return Ok((Persistence::Tmpfs { reason: format!("scan failed: {e}") }, Vec::new()));
            }
        }
    };
    let persistence = persistence_from(opts, &reports, target)?;
    Ok((persistence, reports))
}

fn persistence_from(opts: &Options, reports: &[DeviceReport], target: &Path) -> Result<Persistence, MountError> {
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
            mount::mount_tmpfs(target)?;
            let reason = if opts.persistence == PersistenceMode::Tmpfs {
                "lightwhale.persistence=tmpfs"
            } else {
                "no persistence device"
            };
            Ok(Persistence::Tmpfs { reason: reason.into() })
        }
        Plan::Claim { disk } => {
            let step = console::Step::start("claim");
            log::info!("claim {disk}: the magic header asks for this disk to be formatted; claiming it now");
            match claim::claim(&disk, &system_paths(), &image_mkfs, random_bytes()) {
                Ok(part) => {
                    step.done(&format!("claimed {disk}: {part} is ext4 labelled {}", decide::LABEL));
                    mount_device(&part, false, target, true)
                }
                Err(e) => {
                    log::error!("{e}");
                    log::error!("persistence is OFF for this boot; the header is still on {disk}, so the claim is retried at the next boot");
                    mount::mount_tmpfs(target)?;
                    Ok(Persistence::Failed { device: disk, error: e.to_string() })
                }
            }
        }
        Plan::ClaimPartition { partition, disk } => {
            let step = console::Step::start("claim");
            log::info!("claim {partition}: the magic header asks for this partition of {disk} to be formatted; claiming it alone");
            match claim_partition::claim_partition(&partition, &disk, &system_paths(), &image_mkfs) {
                Ok(()) => {
                    step.done(&format!(
                        "claimed {partition}: ext4 labelled {}; the rest of {disk} is untouched",
                        decide::LABEL
                    ));
                    mount_device(&partition, false, target, true)
                }
                Err(e) => {
                    log::error!("{e}");
                    log::error!(
                        "persistence is OFF for this boot; the claim of {partition} is retried at the next boot"
                    );
                    mount::mount_tmpfs(target)?;
                    Ok(Persistence::Failed { device: partition, error: e.to_string() })
                }
            }
        }
        Plan::Mount { device, fsck } => mount_device(&device, fsck, target, false),
    }
}

/// The image's own mke2fs.
fn image_mkfs(part: &Path, fs_bytes: Option<u64>) -> Result<(), String> {
    let args = claim::mkfs_args(part, fs_bytes);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command::run(Path::new(MKE2FS), &args).map(|_| ()).map_err(|e| e.to_string())
}

fn mount_device(device: &str, fsck: bool, target: &Path, claimed: bool) -> Result<Persistence, MountError> {
    let dev_path = PathBuf::from("/dev").join(device);
    let result = (|| {
        if fsck {
            log::info!("persistence: {device} was not cleanly unmounted; running e2fsck -p");
            let out = mount::fsck(Path::new(E2FSCK), &dev_path)?;
            log::info!("persistence: e2fsck: {}", out.lines().last().unwrap_or("done"));
        }
        mount::mount_ext4(&dev_path, target)
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
            mount::mount_tmpfs(target)?;
            Ok(Persistence::Failed { device: device.into(), error: e.to_string() })
        }
    }
}

/// The filesystem UUID, read back from the superblock after mounting.
fn fs_uuid(dev: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let _ = std::fs::File::open(dev).and_then(|f| f.take(ext4::SUPERBLOCK_END as u64).read_to_end(&mut head));
    ext4::parse(&head).map(|sb| sb.uuid_string()).unwrap_or_else(|| "unknown".into())
}

/// The scan in its sandbox, then the answer checked: every device name must be one PID 1
/// itself sees in /sys/class/block, because the names are joined onto /dev and acted on.
fn scan_sandboxed() -> Result<Vec<DeviceReport>, ScanFailed> {
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

/// Why the scan gave no reports (its sandbox, the child, or an answer that was rejected).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ScanFailed(String);

fn describe(r: &DeviceReport) -> String {
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

/// Random bytes for identifiers (GUIDs, UUIDs), never blocking.
pub fn random_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    // GRND_INSECURE: GUIDs need uniqueness, not secrecy, and must not block early in boot.
    // SAFETY: buf is a valid, writable buffer of the given length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0x0004) };
    if n != buf.len() as isize {
        let t = console::uptime().to_bits().to_le_bytes();
        buf[..8].copy_from_slice(&t);
        buf[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    buf
}
