//! The early initramfs: the static Rust init, /dev/console, and the few kernel modules
//! (with their dependencies) that stage 1 needs to mount the image.

use crate::cpio;
use crate::error::{Error, IoContext, Result};
use crate::progress::Step;
use lightwhale_types::kmod::DepTable;
use std::path::{Path, PathBuf};

const STEP: &str = "initramfs";

/// What goes into an initramfs.
pub struct Initramfs<'a> {
    /// Becomes /init.
    pub init: &'a Path,
    /// The kernel's module tree, `<root>/usr/lib/modules/<release>` (with modules.dep).
    pub module_tree: &'a Path,
    pub release: &'a str,
    /// Kernel modules stage 1 loads ([initramfs] in the modules' manifests); their
    /// dependencies come along.
    pub kernel_modules: &'a [String],
    pub epoch: u64,
    pub out: &'a Path,
}

/// Writes `out`: an initramfs with `init` as /init.
pub fn build(i: &Initramfs) -> Result<PathBuf> {
    let (init, release, out, moddir) = (i.init, i.release, i.out, i.module_tree);
    let step = Step::start(format!(
        "initramfs: {} and stage 1 kernel modules",
        init.file_name().unwrap_or_default().to_string_lossy()
    ));
    let read = |name: &str| std::fs::read_to_string(moddir.join(name)).ctx(STEP, moddir.join(name));
    let deps = DepTable::parse(&read("modules.dep")?, &read("modules.builtin")?);
    let (lines, unknown) = deps.closure_lines(i.kernel_modules.iter().map(String::as_str));
    if !unknown.is_empty() {
        return Err(Error::Step {
            step: STEP,
            message: format!(
                "kernel modules {unknown:?} (from [initramfs] in module.toml) are not in kernel {release}"
            ),
        });
    }

    let out = out.to_path_buf();
    let file = std::fs::File::create(&out).ctx(STEP, &out)?;
    let mut w = cpio::Writer::new(std::io::BufWriter::new(file), i.epoch as u32);
    let init_bytes = std::fs::read(init).ctx(STEP, init)?;
    let kdir = format!("lib/modules/{release}");
    let mut count = 0;
    (|| -> std::io::Result<()> {
        for d in ["dev", "proc", "sys", "run", "newroot", "lib", "lib/modules", &kdir] {
            w.dir(d, 0o755)?;
        }
        w.chardev("dev/console", 0o600, 5, 1)?;
        w.chardev("dev/null", 0o666, 1, 3)?;
        w.file("init", 0o755, &init_bytes)?;
        let mut made_dirs = std::collections::BTreeSet::new();
        for line in &lines {
            let rel = line.split(':').next().unwrap_or_default();
            let mut prefix = String::new();
            for comp in Path::new(rel).parent().into_iter().flat_map(|p| p.components()) {
                prefix = if prefix.is_empty() {
                    comp.as_os_str().to_string_lossy().into_owned()
                } else {
                    format!("{prefix}/{}", comp.as_os_str().to_string_lossy())
                };
                if made_dirs.insert(prefix.clone()) {
                    w.dir(&format!("{kdir}/{prefix}"), 0o755)?;
                }
            }
            w.file(&format!("{kdir}/{rel}"), 0o644, &std::fs::read(moddir.join(rel))?)?;
            count += 1;
        }
        w.file(&format!("{kdir}/modules.dep"), 0o644, (lines.join("\n") + "\n").as_bytes())?;
        w.file(&format!("{kdir}/modules.builtin"), 0o644, &std::fs::read(moddir.join("modules.builtin"))?)?;
        w.finish().map(|_| ())
    })()
    .ctx(STEP, &out)?;
    let size = std::fs::metadata(&out).ctx(STEP, &out)?.len();
    step.done(&format!("{count} kernel modules, {:.1} MB", size as f64 / 1e6));
    Ok(out)
}
