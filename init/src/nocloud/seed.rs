//! Finding the seed: which of the scanned block devices holds a filesystem labelled
//! `cidata` (cloud-init's NoCloud convention; the scan reads the labels, `header::seed_kind`).
//! Pure: the choice works on the scan's reports.

use crate::persist::decide::{DeviceReport, LABEL};
pub use crate::persist::header::{SeedFs, SEED_LABEL};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The device to mount (a kernel name such as `sr1`, `vdb`, `sdb1`) and its filesystem.
    pub seed: Option<(String, SeedFs)>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// Picks the seed among the scanned devices. A disk that carries persistence (a filesystem
/// labelled lightwhale-data on it or on one of its partitions) is never read as a seed.
/// Several seeds: the first by device name, deterministic across boots; the others are
/// named in a warning.
pub fn choose(devices: &[DeviceReport]) -> Choice {
    let mut notes = Vec::new();
    let disk_of = |d: &DeviceReport| d.parent.clone().unwrap_or_else(|| d.name.clone());
    let persistence_disk =
        |disk: &str| devices.iter().any(|x| disk_of(x) == disk && x.ext4.as_ref().is_some_and(|sb| sb.label == LABEL));
    let mut seeds: Vec<(String, SeedFs)> = Vec::new();
    for d in devices {
        let Some(fs) = d.seed else { continue };
        if persistence_disk(&disk_of(d)) {
            notes.push(format!("{}: labelled {SEED_LABEL}, but its disk holds persistence; not read", d.name));
            continue;
        }
        seeds.push((d.name.clone(), fs));
    }
    seeds.sort_by(|a, b| a.0.cmp(&b.0));
    let mut warnings = Vec::new();
    if let Some((first, _)) = seeds.first() {
        for (other, _) in &seeds[1..] {
            warnings.push(format!(
                "{other}: also labelled {SEED_LABEL}; only {first} is read. Detach or relabel the other one."
            ));
        }
    }
    Choice { seed: seeds.into_iter().next(), notes, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{ext4, header::ImageKind};

    fn dev(name: &str, parent: Option<&str>, seed: Option<SeedFs>) -> DeviceReport {
        DeviceReport {
            name: name.into(),
            parent: parent.map(str::to_string),
            size_bytes: 1 << 30,
            read_only: false,
            magic: false,
            image: ImageKind::NotAnImage,
            ext4: None,
            seed,
            ..Default::default()
        }
    }

    #[test]
    fn the_first_seed_by_name_and_a_warning_for_the_rest() {
        let c = choose(&[dev("vdb", None, Some(SeedFs::Vfat)), dev("sr1", None, Some(SeedFs::Iso9660))]);
        assert_eq!(c.seed, Some(("sr1".into(), SeedFs::Iso9660)));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("vdb: also labelled cidata"), "{:?}", c.warnings);
        assert_eq!(choose(&[dev("sda", None, None)]).seed, None);
    }

    #[test]
    fn a_persistence_disk_is_never_read_as_a_seed() {
        let mut data = dev("sdb2", Some("sdb"), None);
        data.ext4 = ext4::parse(&ext4::craft(LABEL, [1; 16], 1, 0, 0));
        let seed_on_data_disk = dev("sdb1", Some("sdb"), Some(SeedFs::Vfat));
        let c = choose(&[dev("sdb", None, None), seed_on_data_disk, data]);
        assert_eq!(c.seed, None);
        assert!(c.notes[0].contains("holds persistence"), "{:?}", c.notes);
    }
}
