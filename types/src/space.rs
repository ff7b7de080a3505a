//! The persistence disk's space: the reserve the init keeps so that a full disk never keeps
//! Docker and sshd from starting, when the disk counts as nearly full, and the swap file's
//! size. The init acts on these rules; `lightwhale status` explains them. Pure.
//!
//! Why a reserve file rather than ext4's reserved blocks: those are kept back from users
//! other than root, and everything that fills a server's disk (Docker's data root, a
//! container's volume, a root shell) writes as root.

use serde::{Deserialize, Serialize};

pub use crate::constants::{RESERVE_FILE, SPACE_FACTS, SWAP_FILE};

const MIB: u64 = 1 << 20;
/// The reserve is never smaller than this (dockerd, containerd and sshd need a few MiB to
/// start and restart the containers; the logs of a boot need less than one)...
pub const RESERVE_MIN: u64 = 32 * MIB;
/// ...nor larger than this, however large the disk.
pub const RESERVE_MAX: u64 = 256 * MIB;

/// The reserve's size on a filesystem of `size` bytes: 1 % of it, at least [`RESERVE_MIN`]
/// and at most [`RESERVE_MAX`], and never more than a sixteenth of the disk (a small one).
pub fn reserve_bytes(size: u64) -> u64 {
    (size / 100).clamp(RESERVE_MIN, RESERVE_MAX).min(size / 16)
}

/// What to do with the reserve, from the filesystem's size and the bytes root can still
/// write (`f_bfree`, not `f_bavail`: Docker and the services write as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveStep {
    /// It is there and the disk has room.
    Keep,
    /// The disk is full (less free than the reserve holds): delete the reserve so that what
    /// starts next has room. Only at boot, before any service: while the services run,
    /// Docker is already up and the reserve stays for the next start.
    Release,
    /// It is missing and there is room for it and as much again: make it.
    Make,
    /// It is missing and there is no room for it yet.
    Wait,
}

pub fn step(size: u64, free: u64, held: bool) -> ReserveStep {
    let reserve = reserve_bytes(size);
    match held {
        true if free < reserve => ReserveStep::Release,
        true => ReserveStep::Keep,
        false if free >= 2 * reserve => ReserveStep::Make,
        false => ReserveStep::Wait,
    }
}

/// Nearly full: less than a twentieth of the filesystem is free for its users (`f_bavail`).
pub fn nearly_full(size: u64, available: u64) -> bool {
    available < size / 20
}

/// The swap file is never larger than this...
pub const SWAP_MAX: u64 = 4 << 30;
/// ...and not made at all when the rule gives less than this.
pub const SWAP_MIN: u64 = 32 * MIB;

/// The swap file's size: as large as the RAM (what a small Docker host most needs: room for
/// the idle pages of its containers), at most [`SWAP_MAX`] and an eighth of the filesystem,
/// in whole MiB; 0 (none) below [`SWAP_MIN`].
pub fn swap_bytes(ram: u64, fs_size: u64) -> u64 {
    let bytes = ram.min(SWAP_MAX).min(fs_size / 8) / MIB * MIB;
    if bytes < SWAP_MIN {
        0
    } else {
        bytes
    }
}

/// A missing swap file is made only when a quarter of the filesystem stays free after it.
pub fn room_for_swap(fs_size: u64, free: u64, swap: u64) -> bool {
    free >= swap + fs_size / 4
}

/// The reserve on this boot, for `lightwhale status` (written by the init at boot and when
/// it makes the reserve again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    /// Its size by [`reserve_bytes`].
    pub bytes: u64,
    /// Whether it is on the disk now. False after the init released it at boot (the disk was
    /// full) until there was room to make it again.
    pub held: bool,
    /// The init released it at this boot because the disk was full.
    pub released_at_boot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_percent_within_bounds() {
        assert_eq!(reserve_bytes(64 * MIB), 4 * MIB, "a 64 MiB disk keeps a sixteenth");
        assert_eq!(reserve_bytes(700 * MIB), RESERVE_MIN);
        assert_eq!(reserve_bytes(10_000 * MIB), 100 * MIB);
        assert_eq!(reserve_bytes(4 << 40), RESERVE_MAX);
    }

    #[test]
    fn released_only_when_the_disk_is_full_and_made_with_room_to_spare() {
        let size = 10_000 * MIB;
        let r = reserve_bytes(size);
        assert_eq!(step(size, 0, true), ReserveStep::Release);
        assert_eq!(step(size, r - 1, true), ReserveStep::Release);
        assert_eq!(step(size, r, true), ReserveStep::Keep);
        assert_eq!(step(size, 2 * r - 1, false), ReserveStep::Wait);
        assert_eq!(step(size, 2 * r, false), ReserveStep::Make);
        // Made, it leaves the reserve's size free: not released again at once.
        assert_eq!(step(size, 2 * r - r, true), ReserveStep::Keep);
    }

    #[test]
    fn swap_is_the_ram_within_an_eighth_of_the_disk() {
        let gib = 1u64 << 30;
        assert_eq!(swap_bytes(2 * gib, 700 * MIB), 87 * MIB, "the VM tests' disk");
        assert_eq!(swap_bytes(2 * gib, 100 * gib), 2 * gib);
        assert_eq!(swap_bytes(64 * gib, 1 << 40), SWAP_MAX);
        assert_eq!(swap_bytes(2 * gib, 200 * MIB), 0, "a 25 MiB swap file is not worth it");
        assert!(room_for_swap(700 * MIB, 600 * MIB, 87 * MIB));
        assert!(!room_for_swap(700 * MIB, 200 * MIB, 87 * MIB));
    }

    #[test]
    fn nearly_full_below_five_percent() {
        assert!(nearly_full(1000 * MIB, 49 * MIB));
        assert!(!nearly_full(1000 * MIB, 50 * MIB));
    }
}
