//! `cargo xtask <command>`: the Debian-path entry point.
//!
//!   deps                install the host tools (apt), no-op when present
//!   iso                 build out/lightwhale.iso
//!   qemu                build if needed and boot the ISO in QEMU (serial console here)
//!   test                unit tests, host tests, then the VM scenarios
//!   bench               boot-time, size and RAM benchmark (writes out/bench.json)

mod bench;
mod build;
mod deps;
mod error;
mod modules;
mod qemu;
mod repro;
mod test;
mod util;

use error::{Error, Result};
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  deps                       install the host packages the build and tests need (apt)
  iso [--refresh] [--force]  build out/lightwhale.iso (--refresh: new package lists)
  qemu [options]             build if needed, then boot the ISO in QEMU
      --disk FILE            attach FILE as an extra IDE disk (repeatable)
      --uefi                 boot with OVMF instead of SeaBIOS
      --as-disk              attach the ISO as a virtio disk (like a USB stick)
      --memory MB            guest RAM (default 2048)
      --no-build             boot the existing ISO without rebuilding
  test [--unit] [--repro] [--vm] [FILTER]
                             unit and host tests, a second build that must be bit-identical,
                             then the VM scenarios (all three by default)
  bench [--runs N] [--no-builds] [--no-memory]
                             boot times against a floor, sizes, RAM, claim and build
                             times; writes out/bench.json (takes 20-30 minutes)
";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn run(args: Vec<String>) -> Result<()> {
    let Some(cmd) = args.first() else {
        print!("{USAGE}");
        return Ok(());
    };
    let rest = &args[1..];
    let ctx = build::Ctx::new(&root());
    match cmd.as_str() {
        "deps" => deps::run(),
        "iso" => {
            let mut opts = build::Options::default();
            for a in rest {
                match a.as_str() {
                    "--refresh" => opts.refresh = true,
                    "--force" => opts.force = true,
                    other => return Err(Error::Usage(format!("iso: unknown option {other}\n{USAGE}"))),
                }
            }
            build::iso(&ctx, opts).map(|_| ())
        }
        "qemu" => qemu::run(&ctx, rest),
        "test" => test::run(&ctx, rest),
        "bench" => bench::run(&ctx, rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(Error::Usage(format!("unknown command {other}\n{USAGE}"))),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
