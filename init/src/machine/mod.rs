//! The machine's own settings at boot: its name, its clock, its network links.

pub mod clock;
pub mod hostname;
pub mod net;
