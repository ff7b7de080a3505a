//! Coldplug without udev: load the driver for every device that sysfs shows a `modalias`
//! for, repeat while new devices appear, and stop once block devices have settled.

use crate::kernel::kmod::Loader;
use crate::persist::scan;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// All modalias strings currently in sysfs: devices on a bus, and input devices, which
/// are class devices only (the power button needs `evdev` for /dev/input/event*).
pub fn modaliases(sys: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![sys.join("class/input")];
    if let Ok(buses) = std::fs::read_dir(sys.join("bus")) {
        dirs.extend(buses.flatten().map(|b| b.path().join("devices")));
    }
    for dir in dirs {
        let Ok(devs) = std::fs::read_dir(dir) else {
            continue;
        };
        for dev in devs.flatten() {
            if let Ok(a) = std::fs::read_to_string(dev.path().join("modalias")) {
                let a = a.trim();
                if !a.is_empty() {
                    out.insert(a.to_string());
                }
            }
        }
    }
    out
}

/// Pure: the modules to load for these aliases, without denied or already tried ones.
pub fn modules_for(
    loader: &Loader,
    aliases: &BTreeSet<String>,
    deny: &[String],
    tried: &BTreeSet<String>,
) -> Vec<String> {
    let mut want: Vec<String> = Vec::new();
    for a in aliases {
        for m in loader.aliases.lookup(a) {
            if !deny.contains(&m) && !tried.contains(&m) && !want.contains(&m) {
                want.push(m);
            }
        }
    }
    want
}

pub struct Settled {
    pub loaded: Vec<String>,
    pub block_devices: Vec<String>,
    pub waited: Duration,
    pub timed_out: bool,
    pub usb_storage: bool,
}

fn block_devices(sys: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys.join("class/block"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !scan::is_virtual(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// SCSI peripheral types that become block devices once sd_mod or sr_mod binds them:
/// disk, CD/DVD, optical memory, reduced block commands (USB sticks and card readers too).
const BLOCK_SCSI_TYPES: &[&str] = &["0", "5", "7", "14"];

/// Pure over sysfs: SCSI devices (ATA, SATA, USB storage, virtio-scsi disks all show up
/// here) of a block type that have no block device yet. While any is pending the disks
/// have not settled, however quiet the rest is: under load, sd_mod can take seconds to
/// bind a disk that the controller already found.
pub fn pending_scsi_disks(sys: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys.join("bus/scsi/devices"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let dev = e.path();
                    let kind = std::fs::read_to_string(dev.join("type")).unwrap_or_default();
                    BLOCK_SCSI_TYPES.contains(&kind.trim()) && !dev.join("block").exists()
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Loads drivers until nothing new shows up, no SCSI disk is waiting for its block device,
/// and the set of block devices has been stable for a quiet period (longer when USB
/// storage is present: USB disks take a second or more to appear), or until `max` has
/// passed.
pub fn settle(loader: &Loader, sys: &Path, deny: &[String], max: Duration) -> Settled {
    let start = Instant::now();
    let mut tried = BTreeSet::new();
    let mut seen_aliases: BTreeSet<String> = BTreeSet::new();
    let mut loaded = Vec::new();
    let mut blocks = block_devices(sys);
    let mut quiet_since = Instant::now();
    loop {
        // Only devices that appeared since the last pass need a lookup.
        let fresh: BTreeSet<String> = modaliases(sys).difference(&seen_aliases).cloned().collect();
        seen_aliases.extend(fresh.iter().cloned());
        let want = modules_for(loader, &fresh, deny, &tried);
        tried.extend(want.iter().cloned());
        let (new, errors) = loader.load(want.iter().map(String::as_str));
        for e in errors {
            log::debug!("coldplug: {e}");
        }
        let now_blocks = block_devices(sys);
        if !new.is_empty() || now_blocks != blocks || !pending_scsi_disks(sys).is_empty() {
            quiet_since = Instant::now();
            blocks = now_blocks;
        }
        loaded.extend(new);
        let usb_storage =
            crate::kernel::kmod::load::is_loaded("usb_storage") || crate::kernel::kmod::load::is_loaded("uas");
        let quiet = if usb_storage { Duration::from_secs(3) } else { Duration::from_millis(300) };
        let timed_out = start.elapsed() >= max;
        if quiet_since.elapsed() >= quiet || timed_out {
            return Settled { loaded, block_devices: blocks, waited: start.elapsed(), timed_out, usb_storage };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scsi_disks_without_a_block_device_are_pending() {
        let sys = std::env::temp_dir().join(format!("lw-sysfs-scsi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let write = |rel: &str, text: &str| {
            let p = sys.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("bus/scsi/devices/0:0:0:0/type", "0\n"); // disk, sd_mod not bound yet
        write("bus/scsi/devices/1:0:0:0/type", "5\n"); // CD-ROM, bound
        std::fs::create_dir_all(sys.join("bus/scsi/devices/1:0:0:0/block/sr0")).unwrap();
        write("bus/scsi/devices/2:0:0:0/type", "1\n"); // tape: never a block device
        write("bus/scsi/devices/host0/uevent", ""); // hosts and targets have no type
        assert_eq!(pending_scsi_disks(&sys), vec!["0:0:0:0".to_string()]);
        std::fs::create_dir_all(sys.join("bus/scsi/devices/0:0:0:0/block/sda")).unwrap();
        assert!(pending_scsi_disks(&sys).is_empty());
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn modaliases_include_bus_and_input_devices() {
        let sys = std::env::temp_dir().join(format!("lw-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let write = |rel: &str, text: &str| {
            let p = sys.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("bus/pci/devices/0000:00:01.1/modalias", "pci:v00008086d00007010sv00001AF4\n");
        write("bus/pci/devices/0000:00:00.0/modalias", "\n");
        write("class/input/input2/modalias", "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw\n");
        write("class/input/event2/dev", "13:66\n");
        let got = modaliases(&sys);
        std::fs::remove_dir_all(&sys).unwrap();
        let want: BTreeSet<String> =
            ["pci:v00008086d00007010sv00001AF4", "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(got, want);
    }
}
