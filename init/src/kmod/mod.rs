//! Kernel module loading without udev or modprobe: the pure parts read `modules.dep`,
//! `modules.alias` and `modules.builtin`; `load` does the `finit_module` calls.

pub mod alias;
pub mod dep;
pub mod load;

pub use alias::AliasTable;
pub use dep::DepTable;
pub use load::{Loader, ModuleError};

/// Module name as the kernel knows it: file stem without `.ko*`, dashes as underscores.
pub fn normalize(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = match base.find(".ko") {
        Some(i) => &base[..i],
        None => base,
    };
    stem.replace('-', "_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalize_paths_and_dashes() {
        assert_eq!(super::normalize("kernel/fs/squashfs/squashfs.ko.xz"), "squashfs");
        assert_eq!(super::normalize("kernel/drivers/ata/ata_piix.ko.zst"), "ata_piix");
        assert_eq!(super::normalize("crc32c-intel"), "crc32c_intel");
    }
}
