//! `setup-hostname NAME`: names the machine at once and for good (the name is kept in
//! /etc/hostname, which lives on the persistence disk; /etc/hosts follows).

use clap::Parser;
use lightwhale_types::hostname;

/// Set this machine's host name: now, and at every boot after this one (with a persistence
/// disk). Without a name set, a machine is called lightwhale-XXXXXX after its machine id.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The new name: letters, digits and '-', in dot-separated parts (RFC 1123).
    name: String,
}

fn run(cli: Cli) -> Result<String, String> {
    let name = hostname::validate(&cli.name).map_err(|e| format!("{e}; nothing was changed"))?;
    lightwhale_tools::root::require(&format!("setup-hostname {}", cli.name))?;
    std::fs::write(hostname::HOSTNAME_FILE, format!("{name}\n"))
        .map_err(|e| format!("writing {}: {e}", hostname::HOSTNAME_FILE))?;
    set_now(&name).map_err(|e| format!("setting the host name: {e}"))?;
    Ok(name)
}

/// The running kernel's name for the machine, and /etc/hosts to match (PID 1 does the same
/// at every boot from /etc/hostname).
fn set_now(name: &str) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call; the
    // kernel copies them.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let hosts = std::fs::read_to_string(hostname::HOSTS_FILE).unwrap_or_default();
    let wanted = hostname::hosts_for(&hosts, name);
    if wanted != hosts {
        std::fs::write(hostname::HOSTS_FILE, wanted)?;
    }
    Ok(())
}

fn main() {
    match run(Cli::parse()) {
        Ok(name) => println!("host name is now {name}"),
        Err(e) => {
            eprintln!("setup-hostname: {e}");
            std::process::exit(2);
        }
    }
}
