//! The paths and values the init and its clients must agree on, in one place.

/// Where the init leaves what it knows about this boot (facts, the seed it read, notices).
pub const RUN_DIR: &str = "/run/lightwhale";
/// `facts::Boot`: each boot step with its uptime.
pub const BOOT_FACTS: &str = "/run/lightwhale/boot.json";
/// `facts::Persistence`: what persistence is on this boot, and why.
pub const PERSISTENCE_FACTS: &str = "/run/lightwhale/persistence.json";
/// `Vec<facts::ServiceFact>`: the supervised services.
pub const SERVICES_FACTS: &str = "/run/lightwhale/services.json";
/// What this boot's NoCloud provisioning did.
pub const NOCLOUD_FACTS: &str = "/run/lightwhale/nocloud.json";
/// `space::Reserve`: the persistence disk's reserve on this boot.
pub const SPACE_FACTS: &str = "/run/lightwhale/space.json";
/// Where a NoCloud seed's filesystem is mounted while it is read.
pub const SEED_DIR: &str = "/run/lightwhale/seed";
/// The writable directories' RAM upper layers when there is no persistence.
pub const VOLATILE_DIR: &str = "/run/lightwhale/volatile";

/// Where the persistence filesystem (or its tmpfs stand-in) is mounted.
pub const DATA_MOUNT_POINT: &str = "/mnt/lightwhale-data";
/// The space the init keeps back on the persistence disk (`space`), root's only.
pub const RESERVE_FILE: &str = "/mnt/lightwhale-data/reserve";
/// The swap file on the persistence disk (`space::swap_bytes`), root's only.
pub const SWAP_FILE: &str = "/mnt/lightwhale-data/swapfile";
/// The filesystem label of a claimed persistence device.
pub const DATA_LABEL: &str = "lightwhale-data";
/// The bytes at the start of a device that ask Lightwhale to claim it.
pub const MAGIC: &[u8] = b"lightwhale-please-format-me";
/// The ISO 9660 volume id of Lightwhale's own image (the boot medium is never claimed).
pub const IMAGE_VOLUME_ID: &str = "LIGHTWHALE";

/// Each module's init configuration (`<module>/init.ron`) in the image.
pub const CONFIG_DIR: &str = "/usr/lib/lightwhale/modules";
/// A module's seccomp profiles, next to its init.ron.
pub const SECCOMP_DIR: &str = "seccomp";

/// The signal that asks the init to re-check the services that wait for a path to exist
/// (`only_if_exists`), e.g. after `setup-wifi` wrote a configuration. SIGHUP.
pub const RECHECK_SIGNAL: i32 = libc::SIGHUP;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boots_facts_are_below_the_run_dir() {
        for p in [BOOT_FACTS, PERSISTENCE_FACTS, SERVICES_FACTS, NOCLOUD_FACTS, SPACE_FACTS, SEED_DIR, VOLATILE_DIR] {
            assert!(p.starts_with(&format!("{RUN_DIR}/")), "{p}");
        }
        assert!(crate::password::ISSUE.starts_with(RUN_DIR) && crate::password::SSH_BANNER.starts_with(RUN_DIR));
    }

    #[test]
    fn the_label_is_what_the_magic_asks_for() {
        assert_eq!(std::str::from_utf8(MAGIC).unwrap(), "lightwhale-please-format-me");
        assert!(DATA_MOUNT_POINT.ends_with(DATA_LABEL));
        assert!(RESERVE_FILE.starts_with(&format!("{DATA_MOUNT_POINT}/")));
        assert!(SWAP_FILE.starts_with(&format!("{DATA_MOUNT_POINT}/")));
    }
}
