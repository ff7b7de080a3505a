//! The filesystems the init mounts besides persistence: `layout` plans the RAM mounts and
//! overlays from `init.ron` (pure), `mounts` carries a plan out.

pub mod layout;
pub mod mounts;
