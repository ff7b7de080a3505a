//! `lightwhale`: the state of a Lightwhale system (`status`) and its logs (`logs`).

use clap::{Parser, Subcommand};
use lightwhale_tools::status;

#[derive(Parser)]
#[command(version, about = "The state of this Lightwhale system")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, boot timeline, persistence, overlays, network, time sync and warnings.
    Status {
        /// Print JSON for scripts (the shape is documented in the README and stays stable).
        #[arg(long)]
        json: bool,
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
    }
}
