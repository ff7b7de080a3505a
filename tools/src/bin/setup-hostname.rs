//! `setup-hostname NAME`: names the machine at once and for good (the name is kept in
//! /etc/hostname, which lives on the persistence disk; /etc/hosts follows).

use clap::Parser;
use lightwhale_init::hostname;

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
    hostname::apply(&name).map_err(|e| format!("setting the host name: {e}"))?;
    Ok(name)
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
