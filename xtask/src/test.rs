//! `cargo xtask test`: unit and host tests for the workspace, then the VM scenarios on a
//! freshly built (or up-to-date) ISO.

use crate::build::{self, Ctx};
use crate::error::{Error, Result};
use crate::util::{self, Step};
use std::process::Command;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let mut unit = false;
    let mut vm = false;
    let mut repro = false;
    let mut filter: Vec<String> = Vec::new();
    for a in args {
        match a.as_str() {
            "--unit" => unit = true,
            "--vm" => vm = true,
            "--repro" => repro = true,
            f if !f.starts_with('-') => filter.push(f.to_string()),
            other => return Err(Error::Usage(format!("test: unknown option {other}"))),
        }
    }
    if !unit && !vm && !repro {
        unit = true;
        vm = true;
        repro = true;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if unit {
        let step = Step::start("unit and host tests (cargo test --workspace)");
        // Host tests that need root and loop devices are #[ignore]d for plain `cargo test`.
        util::run(
            "test",
            Command::new(&cargo)
                .current_dir(&ctx.root)
                .args(["test", "--workspace", "--exclude", "lightwhale-vm-tests", "--", "--include-ignored"])
                .args(&filter),
            "A unit or host test failed (see above).",
        )?;
        util::run(
            "test",
            Command::new(&cargo).current_dir(&ctx.root).args(["test", "-p", "lightwhale-vm-tests", "--lib"]),
            "A harness unit test failed (see above).",
        )?;
        step.done("passed");
    }
    if repro {
        crate::repro::check(ctx)?;
    }
    if vm {
        build::iso(ctx, build::Options::default())?;
        let step = Step::start("VM scenarios (QEMU, TCG)");
        util::run(
            "test",
            Command::new(&cargo)
                .current_dir(&ctx.root)
                .args([
                    "test",
                    "-p",
                    "lightwhale-vm-tests",
                    "--tests",
                    "--",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .args(&filter)
                .env("LIGHTWHALE_OUT", &ctx.out),
            "A VM scenario failed; console logs are in target/vm-tests/<machine>/console.log.",
        )?;
        step.done("passed");
    }
    Ok(())
}
