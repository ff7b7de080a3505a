//! `cargo xtask qemu`: build if needed, then boot the ISO the way the guide does, console
//! on this terminal. The booting itself is `lightwhale_vm_tests::runner`, which the flake's
//! `nix run .#qemu` runs too.

use crate::build::{self, Ctx};
use crate::error::{Error, Result};
use lightwhale_vm_tests::runner::{self, RunArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Boot the existing ISO without rebuilding.
    #[arg(long)]
    no_build: bool,
}

fn vm(e: lightwhale_vm_tests::VmError) -> Error {
    Error::Step { step: "qemu", message: e.to_string() }
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    // Bad options fail before a long build.
    runner::check(&args.run).map_err(vm)?;
    let iso = build::iso_to_boot(ctx, args.no_build, "qemu")?;
    let config = runner::config(&iso, &args.run, &ctx.build).map_err(vm)?;
    runner::boot(&config).map_err(vm)
}
