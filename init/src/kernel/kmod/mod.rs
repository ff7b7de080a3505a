//! Kernel module loading without udev or modprobe: the pure parts read `modules.dep`,
//! `modules.alias` and `modules.builtin`; `load` does the `finit_module` calls.

pub mod alias;
pub mod load;

pub use alias::AliasTable;
pub use lightwhale_types::kmod::{self as dep, normalize, DepTable};
pub use load::{Loader, ModuleError};
