//! `cargo xtask test`: unit and host tests for the workspace, the flake evaluated against the
//! nixpkgs stand-in, a reproducibility rebuild, then the VM scenarios (side by side, see
//! `scenarios`) on a freshly built (or up-to-date) ISO.

use crate::build::{self, Ctx};
use crate::error::Result;
use crate::scenarios;
use crate::util::{self, Step};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Unit and host tests (`cargo test --workspace`, root-only tests included), and the
    /// docs' links and `cargo xtask` commands.
    #[arg(long)]
    unit: bool,
    /// Evaluate the flake (nix flake show, nix flake check --no-build) against the nixpkgs
    /// stand-in, in a Debian 13 chroot with Nix 2.26.
    #[arg(long)]
    flake: bool,
    /// Build everything a second time into out/repro and require bit-identical output.
    #[arg(long)]
    repro: bool,
    /// The VM scenarios under QEMU.
    #[arg(long)]
    vm: bool,
    /// Test machines to run at a time in the VM scenarios (default: a host core each under
    /// TCG, two under KVM, 2.5 GiB of available memory each).
    #[arg(long, value_name = "N")]
    machines: Option<usize>,
    /// Only tests whose name contains one of these.
    filter: Vec<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let all = !args.unit && !args.flake && !args.vm && !args.repro;
    let (unit, flake, vm, repro) = (args.unit || all, args.flake || all, args.vm || all, args.repro || all);
    let filter = &args.filter;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if unit {
        crate::docs::check(ctx, &crate::cli_command())?;
        let step = Step::start("unit and host tests (cargo test --workspace)");
        // Host tests that need root and loop devices are #[ignore]d for plain `cargo test`.
        util::run(
            "test",
            Command::new(&cargo)
                .current_dir(&ctx.root)
                .args(["test", "--workspace", "--exclude", "lightwhale-vm-tests", "--", "--include-ignored"])
                .args(filter),
            "A unit or host test failed (see above).",
        )?;
        util::run(
            "test",
            Command::new(&cargo).current_dir(&ctx.root).args(["test", "-p", "lightwhale-vm-tests", "--lib"]),
            "A harness unit test failed (see above).",
        )?;
        step.done("passed");
    }
    if flake {
        crate::flake::check(ctx)?;
    }
    if repro {
        crate::repro::check(ctx)?;
    }
    if vm {
        build::iso(ctx, build::Options::default())?;
        let accel = lightwhale_vm_tests::Accel::detect();
        let slots = args.machines.unwrap_or_else(|| scenarios::host_slots(accel)).max(1);
        let binaries = scenarios::build(ctx, &cargo)?;
        scenarios::run(ctx, binaries, slots, accel, filter)?;
    }
    Ok(())
}
