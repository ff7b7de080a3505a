//! Setting the machine's name (the choice itself is `lightwhale_types::hostname`).

pub use lightwhale_types::hostname::*;

/// Makes `name` the running system's name and /etc/hosts agree with it (written only
/// when it changes, so an unchanged name writes nothing to the persistence disk).
pub fn apply(name: &str) -> std::io::Result<()> {
    nix::unistd::sethostname(name).map_err(std::io::Error::from)?;
    let hosts = std::fs::read_to_string(HOSTS_FILE).unwrap_or_default();
    let wanted = hosts_for(&hosts, name);
    if wanted != hosts {
        std::fs::write(HOSTS_FILE, wanted)?;
    }
    Ok(())
}
