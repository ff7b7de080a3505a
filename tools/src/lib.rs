//! Lightwhale's commands for the administrator. They share the init's types (host names,
//! the release file, the facts the init writes to /run/lightwhale), so what they say and
//! what the system does cannot drift apart.

pub mod logs;
pub mod root;
pub mod seed;
pub mod status;
pub mod wifi;
