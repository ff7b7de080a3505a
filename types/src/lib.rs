//! The types and constants Lightwhale's init and its clients (the administrator's tools,
//! the image assembler, the tests) share, so that writer and reader cannot disagree. Pure:
//! files are read and written with std only, and no syscall crate is a dependency; what
//! changes the running system stays in the init.

pub mod accounts;
pub mod clock;
pub mod cmdline;
pub mod config;
pub mod constants;
pub mod facts;
pub mod hostname;
pub mod image;
pub mod kmod;
pub mod logs;
pub mod mountinfo;
pub mod names;
pub mod password;
pub mod release;
pub mod seccomp;
pub mod service;
pub mod space;
