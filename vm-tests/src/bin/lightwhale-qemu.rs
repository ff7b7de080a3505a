//! `lightwhale-qemu`: boots a Lightwhale ISO in QEMU with the serial console on this
//! terminal. The flake's `nix run .#qemu` runs it; `cargo xtask qemu` is the same code.

use clap::Parser;
use lightwhale_vm_tests::runner::{self, RunArgs};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Boot a Lightwhale ISO in QEMU (serial console here; quit with Ctrl-A X)")]
struct Cli {
    /// The ISO to boot.
    #[arg(long, env = "LIGHTWHALE_ISO")]
    iso: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let cli = Cli::parse();
    let scratch = std::env::temp_dir().join(format!("lightwhale-qemu-{}", std::process::id()));
    let result = runner::config(&cli.iso, &cli.run, &scratch).and_then(|c| runner::boot(&c));
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
