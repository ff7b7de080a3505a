//! `cargo xtask <command>`: the Debian path's entry point (`cargo xtask --help`).

mod bench;
mod build;
mod cluster;
mod deps;
mod docs;
mod error;
mod flake;
mod qemu;
mod repro;
mod scenarios;
mod test;
mod util;

use clap::{Parser, Subcommand};
use error::Result;
use std::path::{Path, PathBuf};

/// Lightwhale's developer commands on a Debian or Ubuntu host.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the host packages the build and the tests need (apt); a no-op when present.
    Deps,
    /// Build out/lightwhale.iso from Debian trixie packages, skipping unchanged stages.
    Iso(build::Options),
    /// Build the ISO if needed, then boot it in QEMU with the serial console here.
    Qemu(qemu::Args),
    /// Unit and host tests, the flake evaluated against a nixpkgs stand-in, a second build
    /// that must be bit-identical, then the VM scenarios (all four when no part is named).
    Test(test::Args),
    /// Boot N Lightwhale machines (default 2) on a private segment, each with its own
    /// persistence disk, hostname and address; print how to form a Docker Swarm of them,
    /// or form it with --swarm. Ctrl-C shuts them all down.
    Cluster(cluster::Args),
    /// Boot times against a floor, sizes, RAM, claim and build times; writes
    /// out/bench.json (takes 20-30 minutes).
    Bench(bench::Args),
}

/// The whole command line, every subcommand's options included (the docs check reads it).
pub fn cli_command() -> clap::Command {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    command
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn run(cli: Cli) -> Result<()> {
    let ctx = build::Ctx::new(&root());
    // The README's commands are enough on a fresh machine: each installs the host tools it
    // needs first (nothing happens when they are there).
    if !matches!(cli.command, Cmd::Deps) {
        deps::run()?;
    }
    match cli.command {
        Cmd::Deps => deps::run(),
        Cmd::Iso(opts) => build::iso(&ctx, opts).map(|_| ()),
        Cmd::Qemu(args) => qemu::run(&ctx, &args),
        Cmd::Test(args) => test::run(&ctx, &args),
        Cmd::Cluster(args) => cluster::run(&ctx, &args),
        Cmd::Bench(args) => bench::run(&ctx, &args),
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_help_and_the_parser_is_consistent() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help text", sub.get_name());
        }
        assert!(Cli::try_parse_from(["cargo xtask", "iso", "--refresh", "--force"]).is_ok());
        assert!(Cli::try_parse_from(["cargo xtask", "iso", "--nope"]).is_err());
        assert!(Cli::try_parse_from(["cargo xtask", "qemu", "--memory", "lots"]).is_err());
        assert!(Cli::try_parse_from(["cargo xtask", "cluster"]).is_ok());
        assert!(Cli::try_parse_from(["cargo xtask", "cluster", "3", "--swarm", "--no-build"]).is_ok());
        assert!(Cli::try_parse_from(["cargo xtask", "cluster", "three"]).is_err());
    }
}
