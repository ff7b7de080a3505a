//! The persistence decision: given what the scan saw on every block device, which one to
//! mount, which one to claim (format!), or whether to fall back to tmpfs.
//!
//! Pure and small on purpose: this is the only place that can choose to format a disk, and
//! it can only do so for a whole disk whose first bytes carried the magic header, or for a
//! partition that carried it (or the marker of its own claim cut short) and lies wholly
//! outside any boot image and any other partition of its disk.

use super::ext4::Superblock;
use super::header::ImageKind;
use crate::cmdline::PersistenceMode;

pub use lightwhale_types::constants::DATA_LABEL as LABEL;
/// Smaller devices are refused: Docker images alone outgrow them at once.
pub const MIN_CLAIM_BYTES: u64 = 64 * 1024 * 1024;

/// What the sandboxed scan reports for one block device.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceReport {
    /// Kernel name, e.g. `sda`, `sda1`, `nvme0n1p1`.
    pub name: String,
    /// For a partition: the whole disk it belongs to.
    pub parent: Option<String>,
    pub size_bytes: u64,
    pub read_only: bool,
    /// Magic header at byte 0 (of a whole disk, or of a partition: claims that partition alone).
    pub magic: bool,
    pub image: ImageKind,
    pub ext4: Option<Superblock>,
    /// A cloud-init NoCloud seed (a filesystem labelled `cidata`): never claimed.
    #[serde(default)]
    pub seed: Option<crate::persist::header::SeedFs>,
    /// For a partition: where it starts on its disk.
    #[serde(default)]
    pub start_bytes: Option<u64>,
    /// For an image: how many bytes from the device's start it covers.
    #[serde(default)]
    pub image_bytes: Option<u64>,
    /// For a partition: the marker of a claim of it that was cut short.
    #[serde(default)]
    pub claim_marker: bool,
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
    /// Format this partition alone (of `disk`); it carries the magic header or the marker of
    /// its own claim cut short.
    ClaimPartition { partition: String, disk: String },
}

/// Why a device that asked to be claimed is not: a note (by design) or a warning (the user
/// can fix it).
enum Refusal {
    Note(String),
    Warning(String),
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

    // On a boot image: the image itself, or a partition of a disk holding one that does not
    // lie wholly after the image's end (a one-disk machine's persistence partition does).
    let on_image = |d: &DeviceReport| {
        if d.image.is_image() {
            return true;
        }
        let Some(disk) = d.parent.as_deref().and_then(|p| devices.iter().find(|x| x.name == p)) else {
            return false;
        };
        disk.image.is_image() && !matches!((disk.image_bytes, d.start_bytes), (Some(end), Some(s)) if s >= end)
    };
    let parent_has_magic = |d: &DeviceReport| {
        d.parent.as_deref().is_some_and(|p| devices.iter().any(|x| x.name == p && x.magic && !x.image.is_image()))
    };

    let mut claimable: Vec<&DeviceReport> = Vec::new();
    for d in devices.iter().filter(|d| d.magic || (d.claim_marker && !d.is_whole_disk())) {
        match refusal(d, devices) {
            Some(Refusal::Note(n)) => notes.push(n),
            Some(Refusal::Warning(w)) => warnings.push(w),
            None => claimable.push(d),
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
            } else if d.magic || d.claim_marker || parent_has_magic(d) {
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
        let plan = match &disk.parent {
            None => Plan::Claim { disk: disk.name.clone() },
            Some(parent) => Plan::ClaimPartition { partition: disk.name.clone(), disk: parent.clone() },
        };
        return Decision { plan, notes, warnings };
    }

    notes.push("no persistence device: using tmpfs, changes are lost at power-off".to_string());
    Decision { plan: Plan::Tmpfs, notes, warnings }
}

/// Why `d`, which asked to be claimed, must not be; None when it may.
fn refusal(d: &DeviceReport, devices: &[DeviceReport]) -> Option<Refusal> {
    let holds_seed =
        devices.iter().any(|x| x.seed.is_some() && (x.name == d.name || x.parent.as_deref() == Some(&d.name)));
    let parent = d.parent.as_deref().and_then(|p| devices.iter().find(|x| x.name == p));
    if holds_seed {
        return Some(Refusal::Note(format!("{}: has the magic header but holds a cidata seed; never claimed", d.name)));
    }
    if d.image.is_image() {
        return Some(Refusal::Note(format!(
            "{}: has the magic header but holds a boot image ({:?}); never claimed",
            d.name, d.image
        )));
    }
    if d.parent.is_some() {
        if let Some(why) = partition_refusal(d, parent, devices) {
            return Some(Refusal::Note(why));
        }
    }
    if d.read_only {
        return Some(Refusal::Warning(format!("{}: has the magic header but is read-only; not claimed", d.name)));
    }
    if d.size_bytes < MIN_CLAIM_BYTES {
        return Some(Refusal::Warning(format!(
            "{}: has the magic header but is only {} MiB; persistence needs at least {} MiB. Use a larger disk.",
            d.name,
            d.size_bytes / (1024 * 1024),
            MIN_CLAIM_BYTES / (1024 * 1024)
        )));
    }
    None
}

/// A partition is claimed alone only where it cannot touch anything else: its disk does
/// not ask to be claimed whole, it starts after the end of a boot image on its disk, and it
/// overlaps no other partition.
fn partition_refusal(d: &DeviceReport, parent: Option<&DeviceReport>, devices: &[DeviceReport]) -> Option<String> {
    let (Some(parent), Some(start)) = (parent, d.start_bytes) else {
        return Some(format!("{}: has the magic header but its disk or place on it is unknown; not claimed", d.name));
    };
    if parent.magic {
        return Some(format!("{}: its disk {} has the magic header and is claimed whole", d.name, parent.name));
    }
    if parent.image.is_image() {
        match parent.image_bytes {
            Some(end) if start >= end => {}
            _ => {
                return Some(format!(
                    "{}: has the magic header but lies within the boot image on {}; never claimed",
                    d.name, parent.name
                ))
            }
        }
    }
    let end = start + d.size_bytes;
    let overlapping = devices
        .iter()
        .filter(|x| x.name != d.name && x.parent == d.parent)
        .find(|x| x.start_bytes.is_none_or(|s| s < end && start < s + x.size_bytes));
    overlapping.map(|x| {
        format!(
            "{}: has the magic header but overlaps {} on the same disk; not claimed. Fix the partition table.",
            d.name, x.name
        )
    })
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
            ..Default::default()
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

    fn part(name: &str, parent: &str, start: u64, size: u64) -> DeviceReport {
        DeviceReport { parent: Some(parent.into()), start_bytes: Some(start), ..disk(name, size) }
    }

    /// A disk written from the hybrid ISO: the image from sector 0 (its MBR's partition 1
    /// covers it, partition 2 is the ESP inside it), then what the user added after it.
    fn one_disk(extra: Vec<DeviceReport>) -> Vec<DeviceReport> {
        let image = 175 << 20;
        let mut v = vec![
            DeviceReport { image: iso("vda"), image_bytes: Some(image), ..disk("vda", 4 * GIB) },
            DeviceReport { image: iso("vda1"), image_bytes: Some(image), ..part("vda1", "vda", 0, image) },
            part("vda2", "vda", 70 << 10, 5 << 20),
        ];
        v.extend(extra);
        v
    }

    #[test]
    fn a_partition_with_the_header_is_claimed_alone() {
        let opted = DeviceReport { magic: true, ..part("sda2", "sda", GIB, GIB) };
        let d = decide(
            PersistenceMode::Auto,
            &[disk("sda", 3 * GIB), part("sda1", "sda", 1 << 20, GIB - (1 << 20)), opted],
        );
        assert_eq!(d.plan, Plan::ClaimPartition { partition: "sda2".into(), disk: "sda".into() });
    }

    #[test]
    fn on_a_one_disk_machine_only_the_opted_in_partition_after_the_image() {
        let opted = DeviceReport { magic: true, ..part("vda3", "vda", 176 << 20, GIB) };
        let bystander = part("vda4", "vda", (176 << 20) + GIB, 100 << 20);
        let d = decide(PersistenceMode::Auto, &one_disk(vec![opted.clone(), bystander.clone()]));
        assert_eq!(d.plan, Plan::ClaimPartition { partition: "vda3".into(), disk: "vda".into() });
        // No opt-in, no claim.
        assert_eq!(decide(PersistenceMode::Auto, &one_disk(vec![bystander.clone()])).plan, Plan::Tmpfs);
        // A header inside the image's region (the ESP, or a partition that starts too early).
        let esp = DeviceReport { magic: true, ..part("vda2", "vda", 70 << 10, 5 << 20) };
        let mut devs = one_disk(vec![]);
        devs[2] = esp;
        assert_eq!(decide(PersistenceMode::Auto, &devs).plan, Plan::Tmpfs);
        let early = DeviceReport { start_bytes: Some(100 << 20), ..opted.clone() };
        let d = decide(PersistenceMode::Auto, &one_disk(vec![early]));
        assert_eq!(d.plan, Plan::Tmpfs);
        assert!(d.notes.iter().any(|n| n.contains("within the boot image")), "{:?}", d.notes);
        // An image whose size is unknown protects the whole disk.
        let mut devs = one_disk(vec![opted.clone()]);
        devs[0].image_bytes = None;
        assert_eq!(decide(PersistenceMode::Auto, &devs).plan, Plan::Tmpfs);
        // Overlapping another partition: refused.
        let overlapping = part("vda4", "vda", (176 << 20) + GIB - 1, 100 << 20);
        let d = decide(PersistenceMode::Auto, &one_disk(vec![opted, overlapping]));
        assert_eq!(d.plan, Plan::Tmpfs);
        assert!(d.notes.iter().any(|n| n.contains("overlaps vda4")), "{:?}", d.notes);
    }

    #[test]
    fn a_partitions_claim_cut_short_is_claimed_again_and_a_whole_disk_claim_wins() {
        let labelled_marked = DeviceReport { claim_marker: true, ..labelled("sdb2", "sdb", 3, 0) };
        let marked = DeviceReport { start_bytes: Some(GIB), ..labelled_marked };
        let d = decide(PersistenceMode::Auto, &[disk("sdb", 3 * GIB), marked.clone()]);
        assert_eq!(d.plan, Plan::ClaimPartition { partition: "sdb2".into(), disk: "sdb".into() });
        // The header at the start of the whole disk asks for all of it.
        let opted = DeviceReport { magic: true, ..part("sdb2", "sdb", GIB, GIB) };
        let d = decide(PersistenceMode::Auto, &[magic("sdb", 3 * GIB), opted]);
        assert_eq!(d.plan, Plan::Claim { disk: "sdb".into() });
        // The marker means nothing on a whole disk.
        let whole = DeviceReport { claim_marker: true, ..disk("sdc", GIB) };
        assert_eq!(decide(PersistenceMode::Auto, &[whole]).plan, Plan::Tmpfs);
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
    fn a_one_disk_machines_persistence_partition_after_the_image_is_mounted() {
        let claimed = DeviceReport { start_bytes: Some(176 << 20), ..labelled("vda3", "vda", 4, 7) };
        let d = decide(PersistenceMode::Auto, &one_disk(vec![claimed.clone()]));
        assert_eq!(d.plan, Plan::Mount { device: "vda3".into(), fsck: false });
        // The same label inside the image's region is not persistence.
        let inside = DeviceReport { start_bytes: Some(100 << 20), ..claimed };
        assert_eq!(decide(PersistenceMode::Auto, &one_disk(vec![inside])).plan, Plan::Tmpfs);
    }

    #[test]
    fn label_on_boot_image_is_ignored() {
        let img = DeviceReport { image: iso("sr0"), ..disk("sr0", GIB) };
        let part = labelled("sr0p1", "sr0", 1, 1);
        assert_eq!(decide(PersistenceMode::Auto, &[img, part]).plan, Plan::Tmpfs);
    }
}
