//! What the init says and keeps: `console` is the init's own logging (the console, the boot
//! steps, its log file); `files` places the log files and caps each service's.

pub mod console;
pub mod files;
