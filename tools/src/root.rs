//! Commands that change the system need root; they say so in one line instead of failing
//! halfway with "permission denied".

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `Err(message)` naming the `sudo` command line to use, unless running as root.
pub fn require(command_line: &str) -> Result<(), String> {
    if is_root() {
        Ok(())
    } else {
        Err(format!("this changes the system and needs root: run `sudo {command_line}`"))
    }
}
