//! Persistence: find, claim and mount the device that holds configuration and data.
//!
//! `header`, `ext4`, `gpt` and `decide` are pure; `scan`, `claim`, `claim_partition` and `mount` do the I/O;
//! `ready` runs them in order at boot. `reserve` keeps room for the services on a full disk; `swap` swaps to a file on it.

pub mod claim;
pub mod claim_partition;
pub mod decide;
pub mod ext4;
pub mod gpt;
pub mod header;
pub mod mount;
pub mod ready;
pub mod reserve;
pub mod scan;
pub mod swap;

pub use decide::{decide, Decision, DeviceReport, Plan, LABEL};

/// Where the persistence filesystem (or its tmpfs stand-in) is mounted.
pub use lightwhale_types::constants::DATA_MOUNT_POINT as MOUNT_POINT;
