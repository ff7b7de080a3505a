//! Reproducibility: a second build from the same sources and package cache, in a
//! separate output directory, must give bit-identical squashfs, initramfs and ISO.

use crate::build::{self, Ctx};
use crate::error::{Error, IoContext, Result};
use crate::util::{self, Step};

pub fn check(ctx: &Ctx) -> Result<()> {
    let first = build::iso(ctx, build::Options::default())?;
    let step = Step::start("reproducibility: building everything again into out/repro");
    let second_ctx = Ctx::with_out(&ctx.root, &ctx.out.join("repro"));
    let second = build::iso(&second_ctx, build::Options { force: true, ..Default::default() })?;
    let pairs = [
        ("squashfs", ctx.build.join("rootfs.squashfs"), second_ctx.build.join("rootfs.squashfs")),
        ("initramfs", first.initramfs.clone(), second.initramfs.clone()),
        ("ISO", first.iso.clone(), second.iso.clone()),
    ];
    let mut differ = Vec::new();
    let mut same = Vec::new();
    for (what, a, b) in &pairs {
        let (ha, hb) = (util::sha256_file(a).ctx("repro", a)?, util::sha256_file(b).ctx("repro", b)?);
        if ha == hb {
            same.push(format!("{what} {}", &ha[..16]));
        } else {
            differ.push(format!("{what}: {} vs {}", a.display(), b.display()));
        }
    }
    if !differ.is_empty() {
        return Err(Error::Step {
            step: "repro",
            message: format!(
                "two builds from the same sources differ: {}. Compare them with `unsquashfs -lls` or `cmp -l`; the second build is kept in {}",
                differ.join("; "),
                second_ctx.out.display()
            ),
        });
    }
    let _ = std::fs::remove_dir_all(&second_ctx.out);
    step.done(&format!("bit-identical: {}", same.join(", ")));
    Ok(())
}
