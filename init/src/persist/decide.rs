//! The persistence decision: given what the scan saw on every block device, which one to
//! mount, which one to claim (format!), or whether to fall back to tmpfs.
//!
//! Pure and small on purpose: this is the only place that can choose to format a disk, and
//! it can only do so for a whole disk whose first bytes carried the magic header.

use super::ext4::Superblock;
use super::header::ImageKind;
use crate::cmdline::PersistenceMode;

pub use lightwhale_types::constants::DATA_LABEL as LABEL;
/// Smaller devices are refused: Docker images alone outgrow them at once.
pub const MIN_CLAIM_BYTES: u64 = 64 * 1024 * 1024;

/// What the sandboxed scan reports for one block device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceReport {
    /// Kernel name, e.g. `sda`, `sda1`, `nvme0n1p1`.
    pub name: String,
    /// For a partition: the whole disk it belongs to.
    pub parent: Option<String>,
    pub size_bytes: u64,
    pub read_only: bool,
    /// Magic header at byte 0 (only meaningful for whole disks).
    pub magic: bool,
    pub image: ImageKind,
    pub ext4: Option<Superblock>,
    /// A cloud-init NoCloud seed (a filesystem labelled `cidata`): never claimed.
    #[serde(default)]
    pub seed: Option<crate::persist::header::SeedFs>,
}

impl DeviceReport {
    pub fn is_whole_disk(&self) -> bool {
        self.parent.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Volatile persistence; nothing on any device is touched.
    Tmpfs,
    /// Mount this filesystem (by device name) at the persistence mount point.
    Mount { device: String, fsck: bool },
    /// Partition and format this whole disk; it carries the magic header.
    Claim { disk: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    /// Why: one line per device that mattered, for the console.
    pub notes: Vec<String>,
    /// Things the user should fix, shown as warnings.
    pub warnings: Vec<String>,
}

pub fn decide(mode: PersistenceMode, devices: &[DeviceReport]) -> Decision {
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    if mode == PersistenceMode::Tmpfs {
        notes.push("lightwhale.persistence=tmpfs: devices are ignored".to_string());
        return Decision { plan: Plan::Tmpfs, notes, warnings };
    }

    let on_image = |d: &DeviceReport| {
        let disk = d.parent.as_deref().unwrap_or(&d.name);
        devices.iter().any(|x| x.name == disk && x.image.is_image())
    };
    let parent_has_magic = |d: &DeviceReport| {
        d.parent.as_deref().is_some_and(|p| devices.iter().any(|x| x.name == p && x.magic && !x.image.is_image()))
    };

    let holds_seed = |d: &DeviceReport| {
        devices.iter().any(|x| x.seed.is_some() && (x.name == d.name || x.parent.as_deref() == Some(&d.name)))
    };
    let mut claimable: Vec<&DeviceReport> = Vec::new();
    for d in devices.iter().filter(|d| d.is_whole_disk() && d.magic) {
        if holds_seed(d) {
            notes.push(format!("{}: has the magic header but holds a cidata seed; never claimed", d.name));
        } else if d.image.is_image() {
            notes.push(format!(
                "{}: has the magic header but holds a boot image ({:?}); never claimed",
                d.name, d.image
            ));
        } else if d.read_only {
            warnings.push(format!("{}: has the magic header but is read-only; not claimed", d.name));
        } else if d.size_bytes < MIN_CLAIM_BYTES {
            warnings.push(format!(
                "{}: has the magic header but is only {} MiB; persistence needs at least {} MiB. Use a larger disk.",
                d.name,
                d.size_bytes / (1024 * 1024),
                MIN_CLAIM_BYTES / (1024 * 1024)
            ));
        } else {
            claimable.push(d);
        }
    }
    claimable.sort_by(|a, b| a.name.cmp(&b.name));

    // A labelled partition on a disk that still has the header is a claim that was cut
    // short: it is claimed again, never mounted.
    let mut labelled: Vec<(&DeviceReport, &Superblock)> = devices
        .iter()
        .filter_map(|d| d.ext4.as_ref().filter(|s| s.label == LABEL).map(|s| (d, s)))
        .filter(|(d, _)| {
            if on_image(d) {
                notes.push(format!("{}: labelled {LABEL} but on a boot image; ignored", d.name));
                false
            } else if d.magic || parent_has_magic(d) {
                notes.push(format!(
                    "{}: labelled {LABEL} but its disk still has the magic header (interrupted claim)",
                    d.name
                ));
                false
            } else {
                true
            }
        })
        .collect();
    // Deterministic and stable across reboots: the one mounted most recently (mounting it
    // makes it stay the most recent), then the lowest filesystem UUID.
    labelled.sort_by(|(a, sa), (b, sb)| {
        sb.mount_time.cmp(&sa.mount_time).then(sa.uuid.cmp(&sb.uuid)).then(a.name.cmp(&b.name))
    });

    if let Some(&(chosen, sb)) = labelled.first() {
        for (other, _) in labelled.iter().skip(1) {
            warnings.push(format!(
                "{}: also labelled {LABEL}; using {} (mounted most recently). Relabel or remove the other one.",
                other.name, chosen.name
            ));
        }
        for d in &claimable {
            warnings.push(format!(
                "{}: has the magic header, but persistence already lives on {}; not claimed. Remove one of them.",
                d.name, chosen.name
            ));
        }
        notes.push(format!("{}: persistence filesystem {}", chosen.name, sb.uuid_string()));
        return Decision { plan: Plan::Mount { device: chosen.name.clone(), fsck: sb.needs_fsck() }, notes, warnings };
    }

    if let Some(disk) = claimable.first() {
        for other in claimable.iter().skip(1) {
            warnings.push(format!(
                "{}: also has the magic header; only {} is claimed on this boot. Remove the header from one of them.",
                other.name, disk.name
            ));
        }
        notes.push(format!("{}: magic header found, {} MiB", disk.name, disk.size_bytes / (1024 * 1024)));
        return Decision { plan: Plan::Claim { disk: disk.name.clone() }, notes, warnings };
    }

    notes.push("no persistence device: using tmpfs, changes are lost at power-off".to_string());
    Decision { plan: Plan::Tmpfs, notes, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::ext4;

    const GIB: u64 = 1 << 30;

    fn disk(name: &str, size: u64) -> DeviceReport {
        DeviceReport {
            name: name.into(),
            parent: None,
            size_bytes: size,
            read_only: false,
            magic: false,
            image: ImageKind::NotAnImage,
            ext4: None,
            seed: None,
        }
    }
    fn magic(name: &str, size: u64) -> DeviceReport {
        DeviceReport { magic: true, ..disk(name, size) }
    }
    fn labelled(name: &str, parent: &str, uuid: u8, mount_time: u32) -> DeviceReport {
        let sb = ext4::parse(&ext4::craft(LABEL, [uuid; 16], 1, 0, mount_time)).unwrap();
        DeviceReport { parent: Some(parent.into()), ext4: Some(sb), ..disk(name, GIB) }
    }
    fn iso(name: &str) -> ImageKind {
        let _ = name;
        ImageKind::Iso9660 { volume_id: "LIGHTWHALE".into() }
    }

    #[test]
    fn a_seed_is_never_claimed_even_with_the_magic_header() {
        use crate::persist::header::SeedFs;
        let seed = DeviceReport { seed: Some(SeedFs::Vfat), ..magic("vdb", GIB) };
        let d = decide(PersistenceMode::Auto, &[seed]);
        assert_eq!(d.plan, Plan::Tmpfs);
        assert!(d.notes[0].contains("cidata seed; never claimed"), "{:?}", d.notes);
        // Nor a disk one of whose partitions is a seed.
        let part = DeviceReport { parent: Some("sdc".into()), seed: Some(SeedFs::Vfat), ..disk("sdc1", GIB) };
        assert_eq!(decide(PersistenceMode::Auto, &[magic("sdc", GIB), part]).plan, Plan::Tmpfs);
    }

    #[test]
    fn no_devices_means_tmpfs() {
        assert_eq!(decide(PersistenceMode::Auto, &[]).plan, Plan::Tmpfs);
        assert_eq!(decide(PersistenceMode::Auto, &[disk("sda", GIB), disk("vda", GIB)]).plan, Plan::Tmpfs);
    }

    #[test]
    fn magic_whole_disk_is_claimed() {
        let d = decide(PersistenceMode::Auto, &[disk("sdb", GIB), magic("sda", GIB)]);
        assert_eq!(d.plan, Plan::Claim { disk: "sda".into() });
    }

    #[test]
    fn tmpfs_mode_never_claims_or_mounts() {
        let devs = [magic("sda", GIB), labelled("sdb1", "sdb", 1, 5), disk("sdb", GIB)];
        assert_eq!(decide(PersistenceMode::Tmpfs, &devs).plan, Plan::Tmpfs);
    }

    #[test]
    fn header_on_a_partition_is_not_a_claim() {
        let part = DeviceReport { parent: Some("sda".into()), magic: true, ..disk("sda1", GIB) };
        let d = decide(PersistenceMode::Auto, &[disk("sda", GIB), part]);
        assert_eq!(d.plan, Plan::Tmpfs);
    }

    #[test]
    fn boot_image_with_forged_header_is_never_claimed() {
        let forged = DeviceReport { image: iso("vda"), ..magic("vda", GIB) };
        let d = decide(PersistenceMode::Auto, &[forged]);
        assert_eq!(d.plan, Plan::Tmpfs);
        assert!(d.notes.iter().any(|n| n.contains("boot image")));
    }

    #[test]
    fn too_small_and_read_only_are_refused_with_a_reason() {
        let d = decide(PersistenceMode::Auto, &[magic("sda", 32 << 20)]);
        assert_eq!(d.plan, Plan::Tmpfs);
        assert!(d.warnings[0].contains("at least 64 MiB"), "{:?}", d.warnings);
        let ro = DeviceReport { read_only: true, ..magic("sr0", GIB) };
        assert_eq!(decide(PersistenceMode::Auto, &[ro]).plan, Plan::Tmpfs);
        assert_eq!(
            decide(PersistenceMode::Auto, &[magic("sda", MIN_CLAIM_BYTES)]).plan,
            Plan::Claim { disk: "sda".into() }
        );
    }

    #[test]
    fn label_is_mounted_and_fsck_follows_superblock_state() {
        let d = decide(PersistenceMode::Auto, &[disk("sda", GIB), labelled("sda1", "sda", 1, 10)]);
        assert_eq!(d.plan, Plan::Mount { device: "sda1".into(), fsck: false });
        let mut dirty = labelled("sda1", "sda", 1, 10);
        dirty.ext4.as_mut().unwrap().clean = false;
        assert_eq!(decide(PersistenceMode::Auto, &[dirty]).plan, Plan::Mount { device: "sda1".into(), fsck: true });
    }

    #[test]
    fn other_labels_are_not_persistence() {
        let mut other = labelled("sda1", "sda", 1, 10);
        other.ext4.as_mut().unwrap().label = "lightwhale-dat".into();
        assert_eq!(decide(PersistenceMode::Auto, &[other]).plan, Plan::Tmpfs);
    }

    #[test]
    fn interrupted_claim_is_claimed_again_not_mounted() {
        let devs = [magic("sda", GIB), labelled("sda1", "sda", 1, 0)];
        assert_eq!(decide(PersistenceMode::Auto, &devs).plan, Plan::Claim { disk: "sda".into() });
    }

    #[test]
    fn two_labels_pick_most_recently_mounted_then_uuid() {
        let devs = [labelled("sda1", "sda", 9, 100), labelled("sdb1", "sdb", 1, 200)];
        let d = decide(PersistenceMode::Auto, &devs);
        assert_eq!(d.plan, Plan::Mount { device: "sdb1".into(), fsck: false });
        assert!(d.warnings.iter().any(|w| w.starts_with("sda1")));
        let tie = [labelled("sdb1", "sdb", 9, 100), labelled("sda1", "sda", 1, 100)];
        assert_eq!(decide(PersistenceMode::Auto, &tie).plan, Plan::Mount { device: "sda1".into(), fsck: false });
        // Order of the scan does not matter.
        let rev = [tie[1].clone(), tie[0].clone()];
        assert_eq!(decide(PersistenceMode::Auto, &rev).plan, decide(PersistenceMode::Auto, &tie).plan);
    }

    #[test]
    fn existing_persistence_wins_over_a_new_header() {
        let devs = [labelled("sda1", "sda", 1, 1), disk("sda", GIB), magic("sdb", GIB)];
        let d = decide(PersistenceMode::Auto, &devs);
        assert_eq!(d.plan, Plan::Mount { device: "sda1".into(), fsck: false });
        assert!(d.warnings.iter().any(|w| w.starts_with("sdb")));
    }

    #[test]
    fn two_headers_claim_one_deterministically() {
        let d = decide(PersistenceMode::Auto, &[magic("sdc", GIB), magic("sdb", GIB)]);
        assert_eq!(d.plan, Plan::Claim { disk: "sdb".into() });
        assert!(d.warnings.iter().any(|w| w.starts_with("sdc")));
    }

    #[test]
    fn label_on_boot_image_is_ignored() {
        let img = DeviceReport { image: iso("sr0"), ..disk("sr0", GIB) };
        let part = labelled("sr0p1", "sr0", 1, 1);
        assert_eq!(decide(PersistenceMode::Auto, &[img, part]).plan, Plan::Tmpfs);
    }
}
