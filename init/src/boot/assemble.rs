//! The system assembled inside the image, before any service: drivers, RAM mounts,
//! persistence (with room kept on a full disk) and the overlays, the logs' place, the
//! NoCloud seed. When `assemble` returns,
//! /etc, /home, /root and /var/www are the user's.

use crate::boot::stage1;
use crate::cmdline::Options;
use crate::config::{self, InitConfig};
use crate::facts::{self, Persistence};
use crate::fs::layout;
use crate::fs::mounts::{self, MountError};
use crate::kernel::{coldplug, kmod};
use crate::logging::{console, files};
use crate::persist::{self, mount::MountError as PersistError, DeviceReport};
use std::path::Path;

use lightwhale_types::constants::VOLATILE_DIR as VOLATILE_BASE;
use lightwhale_types::space;

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("reading the init configuration: {0}")]
    Config(#[from] config::LoadError),
    #[error("kernel modules: {0}")]
    Modules(#[from] kmod::ModuleError),
    #[error("{0}")]
    Mount(#[from] MountError),
    #[error("persistence: {0}")]
    Persist(#[from] PersistError),
}

/// What stage 2 needs of the assembled system.
pub struct System {
    pub config: InitConfig,
    pub loader: kmod::Loader,
    pub persistence: Persistence,
    /// The image's own /etc/shadow, read before the overlays hide it (`password_notices`).
    pub image_shadow: String,
    /// The persistence disk's reserve; None without a persistence disk.
    pub reserve: Option<lightwhale_types::space::Reserve>,
}

/// The phases, in order.
pub fn assemble(opts: &Options) -> Result<System, SystemError> {
    let config = config::load(Path::new(config::CONFIG_DIR))?;
    let loader = drivers(&config, opts)?;
    volatile_mounts(&config)?;
    let (persistence, reports) = persistence(opts)?;
    let reserve = disk_space(opts, &persistence);
    let image_shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    overlays(&config)?;
    place_logs(&persistence);
    // The seed is applied to the persisted /etc, before any service reads it.
    crate::nocloud::provision(opts, &reports, &config, &loader);
    Ok(System { config, loader, persistence, image_shadow, reserve })
}

/// The drivers for the hardware present, and the filesystem modules `init.ron` names.
fn drivers(config: &InitConfig, opts: &Options) -> Result<kmod::Loader, SystemError> {
    let loader = kmod::Loader::open(&Path::new("/lib/modules").join(stage1::kernel_release()))?;
    // The filesystem modules (ext4 alone takes half a second to insert under emulation) load
    // on their own thread while the drivers settle, which is mostly waiting: nothing needs
    // them before the volatile mounts, which therefore come after coldplug.
    std::thread::scope(|s| {
        let fs = s.spawn(|| load_filesystem_modules(&loader, &config.kernel_modules.load));
        settle_drivers(&loader, config, opts);
        if fs.join().is_err() {
            log::error!("loading the filesystem modules panicked; mounts that need them will fail");
        }
    });
    Ok(loader)
}

/// RAM filesystems for the directories that are writable but never persisted.
fn volatile_mounts(config: &InitConfig) -> Result<(), MountError> {
    let step = console::Step::start("volatile mounts");
    for s in layout::volatile(&config.filesystems, Path::new(VOLATILE_BASE)) {
        mounts::apply(&s)?;
    }
    step.done(&format!(
        "{} and {} writable in RAM",
        config.filesystems.tmpfs.join(" "),
        config.filesystems.volatile.join(" ")
    ));
    Ok(())
}

/// The persistence device (claimed, checked and mounted) or its tmpfs stand-in; the scan's
/// reports come back too, for the seed.
fn persistence(opts: &Options) -> Result<(Persistence, Vec<DeviceReport>), SystemError> {
    let step = console::Step::start("persistence ready");
    let (persistence, reports) = persist::ready::persistence(opts)?;
    step.done(&match &persistence {
        Persistence::Device { device, claimed, uuid } => format!(
            "{device} (ext4 {uuid}) mounted at {}{}",
            persist::MOUNT_POINT,
            if *claimed { ", newly claimed" } else { "" }
        ),
        Persistence::Tmpfs { reason } => format!("tmpfs at {} ({reason})", persist::MOUNT_POINT),
        Persistence::Failed { device, .. } => format!("tmpfs at {} because {device} failed", persist::MOUNT_POINT),
    });
    if let Err(e) = facts::write(facts::PERSISTENCE, &persistence) {
        log::warn!("writing {}: {e}", facts::PERSISTENCE);
    }
    Ok((persistence, reports))
}

/// On a full persistence disk, the reserve is released before anything writes to it; then
/// swap to a file on the disk.
fn disk_space(opts: &Options, persistence: &Persistence) -> Option<space::Reserve> {
    if !matches!(persistence, Persistence::Device { .. }) {
        return None;
    }
    let reserve = persist::reserve::at_boot(Path::new(space::RESERVE_FILE));
    if let Some(r) = &reserve {
        if let Err(e) = facts::write(space::SPACE_FACTS, r) {
            log::warn!("writing {}: {e}", space::SPACE_FACTS);
        }
    }
    let uuid = persist::ready::random_bytes()[..16].try_into().unwrap_or_default();
    persist::swap::at_boot(opts.swap, Path::new(space::SWAP_FILE), uuid);
    reserve
}

/// The overlays that merge the persisted directories over the image's.
fn overlays(config: &InitConfig) -> Result<(), MountError> {
    let step = console::Step::start("overlays mounted");
    let data = Path::new(persist::MOUNT_POINT);
    mounts::mkdir_p(&layout::docker_root(data))?;
    for s in layout::persisted(&config.filesystems, data) {
        mounts::apply(&s)?;
    }
    step.done(&config.filesystems.persisted.join(" "));
    Ok(())
}

/// The logs go on the persistence disk when there is one, else they stay in RAM.
fn place_logs(persistence: &Persistence) {
    let on_disk = matches!(persistence, Persistence::Device { .. });
    let data = Path::new(persist::MOUNT_POINT);
    match files::prepare(data, on_disk) {
        Ok(place) => {
            let log = files::path(Path::new(files::LOG_DIR), files::INIT_LOG);
            if let Err(e) = console::attach_file(log) {
                log::warn!("logs: cannot write the init's log: {e}");
            }
            log::info!(
                "logs: in {} ({})",
                files::LOG_DIR,
                if place == files::Place::Disk { "on the persistence disk, kept for the next boot" } else { "in RAM" }
            );
        }
        Err(e) => log::warn!("logs: could not put the logs on the persistence disk: {e}; they stay in RAM"),
    }
}

fn load_filesystem_modules(loader: &kmod::Loader, names: &[String]) {
    let step = console::Step::start("filesystem modules");
    let (loaded, errors) = loader.load(names.iter().map(String::as_str));
    for e in errors {
        log::warn!("{e}");
    }
    step.done(&format!("{} loaded", if loaded.is_empty() { "none".to_string() } else { loaded.join(" ") }));
}

fn settle_drivers(loader: &kmod::Loader, config: &InitConfig, opts: &Options) {
    let step = console::Step::start("drivers loaded");
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
