//! `lightwhale`: the state of a Lightwhale system (`status`) and its logs (`logs`).

use clap::{Parser, Subcommand};
use lightwhale_tools::{logs, status};

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
        Cmd::Logs { service, previous } => match logs::read(service.as_deref(), previous) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("lightwhale logs: {e}");
                std::process::exit(2);
            }
        },
    }
}
