//! Persistence: find, claim and mount the device that holds configuration and data.
//!
//! `header`, `ext4`, `gpt` and `decide` are pure; `scan`, `claim` and `mount` do the I/O;
//! `ready` runs them in order at boot.

pub mod claim;
pub mod decide;
pub mod ext4;
pub mod gpt;
pub mod header;
pub mod mount;
pub mod ready;
pub mod scan;

pub use decide::{decide, Decision, DeviceReport, Plan, LABEL};

/// Where the persistence filesystem (or its tmpfs stand-in) is mounted.
pub use lightwhale_types::constants::DATA_MOUNT_POINT as MOUNT_POINT;
