//! Finding the seed: which block device holds a filesystem labelled `cidata` (cloud-init's
//! NoCloud convention). Pure: the label readers work on the first bytes the device scan
//! read anyway, and the choice works on the scan's reports.

use crate::persist::decide::{DeviceReport, LABEL};
use crate::persist::header::{self, ImageKind};

/// The volume label cloud-init's NoCloud datasource looks for (any case).
pub const SEED_LABEL: &str = "cidata";

/// The filesystem a seed was found on, which is also the type to mount it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeedFs {
    Iso9660,
    Vfat,
}

impl SeedFs {
    pub fn fstype(self) -> &'static str {
        match self {
            SeedFs::Iso9660 => "iso9660",
            SeedFs::Vfat => "vfat",
        }
    }
}

/// The volume label of a FAT12/16/32 filesystem, from its boot sector. Only fields after
/// byte 36 are read: a magic header written over byte 0 (27 bytes, plus `echo`'s newline)
/// must not hide a seed, or the seed could be claimed as persistence.
pub fn vfat_label(head: &[u8]) -> Option<String> {
    if head.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    let ext_sig = |at: usize| matches!(head.get(at), Some(0x28 | 0x29));
    // FAT12/16: extended boot record at 36, label at 43, type at 54; FAT32: at 64, 71, 82.
    let label_at = if ext_sig(38) && head.get(54..57) == Some(b"FAT") {
        43
    } else if ext_sig(66) && head.get(82..87) == Some(b"FAT32") {
        71
    } else {
        return None;
    };
    let raw = head.get(label_at..label_at + 11)?;
    let label = String::from_utf8_lossy(raw).trim_end_matches([' ', '\0']).to_string();
    (!label.is_empty() && label != "NO NAME").then_some(label)
}

/// The kind of seed a device's first bytes show, if its label is `cidata`.
pub fn detect(head: &[u8]) -> Option<SeedFs> {
    if let ImageKind::Iso9660 { volume_id } = header::image_kind(head) {
        return volume_id.eq_ignore_ascii_case(SEED_LABEL).then_some(SeedFs::Iso9660);
    }
    vfat_label(head).filter(|l| l.eq_ignore_ascii_case(SEED_LABEL)).map(|_| SeedFs::Vfat)
}

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
    use crate::persist::ext4;

    /// The boot sector mkfs.fat writes for `mkfs.vfat -n cidata` (FAT12 on a small image).
    fn fat16_head(label: &[u8; 11]) -> Vec<u8> {
        let mut h = vec![0u8; 36 * 1024];
        h[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        h[3..11].copy_from_slice(b"mkfs.fat");
        h[11..13].copy_from_slice(&512u16.to_le_bytes());
        h[38] = 0x29;
        h[43..54].copy_from_slice(label);
        h[54..62].copy_from_slice(b"FAT12   ");
        h[510] = 0x55;
        h[511] = 0xAA;
        h
    }

    fn fat32_head(label: &[u8; 11]) -> Vec<u8> {
        let mut h = vec![0u8; 36 * 1024];
        h[66] = 0x29;
        h[71..82].copy_from_slice(label);
        h[82..90].copy_from_slice(b"FAT32   ");
        h[510] = 0x55;
        h[511] = 0xAA;
        h
    }

    fn iso_head(volid: &str) -> Vec<u8> {
        let mut h = vec![0u8; 36 * 1024];
        h[32768] = 1;
        h[32769..32774].copy_from_slice(b"CD001");
        let mut v = volid.as_bytes().to_vec();
        v.resize(32, b' ');
        h[32808..32840].copy_from_slice(&v);
        h
    }

    #[test]
    fn vfat_labels_fat16_and_fat32() {
        assert_eq!(vfat_label(&fat16_head(b"cidata     ")).as_deref(), Some("cidata"));
        assert_eq!(vfat_label(&fat32_head(b"CIDATA     ")).as_deref(), Some("CIDATA"));
        assert_eq!(vfat_label(&fat16_head(b"NO NAME    ")), None);
        assert_eq!(vfat_label(&[0u8; 512]), None);
        assert_eq!(vfat_label(&[0u8; 100]), None);
        let mut no_sig = fat16_head(b"cidata     ");
        no_sig[511] = 0;
        assert_eq!(vfat_label(&no_sig), None);
    }

    #[test]
    fn seeds_by_label_in_any_case() {
        assert_eq!(detect(&iso_head("cidata")), Some(SeedFs::Iso9660));
        assert_eq!(detect(&iso_head("CIDATA")), Some(SeedFs::Iso9660));
        assert_eq!(detect(&fat16_head(b"CIDATA     ")), Some(SeedFs::Vfat));
        assert_eq!(detect(&iso_head("LIGHTWHALE")), None);
        assert_eq!(detect(&iso_head("cidata2")), None);
        assert_eq!(detect(&fat16_head(b"DATA       ")), None);
        assert_eq!(detect(&[0u8; 36 * 1024]), None);
    }

    #[test]
    fn the_magic_header_does_not_hide_a_vfat_seed() {
        let mut h = fat16_head(b"cidata     ");
        h[..28].copy_from_slice(b"lightwhale-please-format-me\n");
        assert_eq!(detect(&h), Some(SeedFs::Vfat));
    }

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
