//! `lightwhale`: the state of a Lightwhale system (`status`), its logs (`logs`), and a
//! check of a cloud-init seed before it is booted (`seed check`).

use clap::{Parser, Subcommand};
use lightwhale_tools::{logs, seed, status};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "The state of this Lightwhale system and its logs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, boot timeline, persistence, overlays, network, time sync and warnings.
    Status {
        /// Print JSON for scripts (the shape is documented in docs/operations.md and stays stable).
        #[arg(long)]
        json: bool,
    },
    /// The few lines shown at every login: version, persistence, addresses, warnings.
    Motd,
    /// A service's output (`dockerd`, `sshd`, ...), or without a name the init's own log:
    /// the boot, services starting, stopping and restarting, the shutdown.
    Logs {
        service: Option<String>,
        /// The boot before this one (kept on the persistence disk; read it after a crash).
        #[arg(long)]
        previous: bool,
    },
    /// Cloud-init NoCloud seeds.
    Seed {
        #[command(subcommand)]
        command: SeedCmd,
    },
}

#[derive(Subcommand)]
enum SeedCmd {
    /// Read the seed in DIR (meta-data, user-data, network-config) with the boot's own code
    /// and print what the boot would do, refuse and ignore; exits 1 when a file has errors.
    Check {
        dir: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Exit 1 also when something is refused.
        #[arg(long)]
        strict: bool,
    },
}

fn main() {
    match Cli::parse().command {
        Cmd::Status { json } => {
            let s = status::gather();
            if json {
                println!("{}", serde_json::to_string_pretty(&s).expect("status serialises"));
            } else {
                print!("{}", status::render(&s));
            }
        }
        Cmd::Motd => print!("{}", status::render_motd(&status::gather())),
        Cmd::Seed { command: SeedCmd::Check { dir, json, strict } } => {
            if !dir.is_dir() {
                eprintln!("lightwhale seed check: {} is not a directory: give the directory that holds meta-data and user-data", dir.display());
                std::process::exit(2);
            }
            let machine = seed::Machine::here();
            let c = seed::check(&dir, &machine);
            if json {
                println!("{}", serde_json::to_string_pretty(&c).expect("the check serialises"));
            } else {
                print!("{}", seed::render(&dir, &c, &machine.against));
            }
            if !c.errors.is_empty() || (strict && !c.refused.is_empty()) {
                std::process::exit(1);
            }
        }
        Cmd::Logs { service, previous } => match logs::read(service.as_deref(), previous) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("lightwhale logs: {e}");
                std::process::exit(2);
            }
        },
    }
}
