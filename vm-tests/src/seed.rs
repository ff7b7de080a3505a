//! NoCloud seed images from a directory holding `meta-data`, `user-data` and optionally
//! `network-config`, the way cloud-init's `cloud-localds` makes them: an ISO 9660 image
//! with the volume id `cidata` (xorriso), or a FAT image labelled `CIDATA` (mkfs.vfat and
//! mtools). `cargo xtask qemu --seed DIR` and the VM scenarios use them.

use crate::VmError;
use std::path::Path;
use std::process::Command;

/// The files a seed directory must have: without meta-data cloud-init ignores a seed, so
/// the guide's example always has one.
pub const REQUIRED: &[&str] = &["meta-data"];

fn run(what: &str, cmd: &mut Command) -> Result<(), VmError> {
    let out = cmd.output().map_err(|e| VmError::Setup(format!("{what}: {e} (run `cargo xtask deps`)")))?;
    if !out.status.success() {
        return Err(VmError::Setup(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Fails with a message that says what to write when `dir` is no seed directory.
pub fn check_dir(dir: &Path) -> Result<(), VmError> {
    if !dir.is_dir() {
        return Err(VmError::Setup(format!(
            "seed directory {} does not exist: make one with meta-data (instance-id: ...) and user-data (#cloud-config ...)",
            dir.display()
        )));
    }
    for f in REQUIRED {
        if !dir.join(f).is_file() {
            return Err(VmError::Setup(format!(
                "{} has no {f}: write at least `instance-id: my-first-seed` into it",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// An ISO 9660 seed (volume id `cidata`, Joliet and Rock Ridge) at `out`.
pub fn iso(dir: &Path, out: &Path) -> Result<(), VmError> {
    check_dir(dir)?;
    let _ = std::fs::remove_file(out);
    run(
        "xorriso (making the seed ISO)",
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"])
            .arg(out)
            .arg(dir),
    )
}

/// A FAT seed (label `CIDATA`) of 2 MiB at `out`, the files copied in with mtools.
pub fn vfat(dir: &Path, out: &Path) -> Result<(), VmError> {
    check_dir(dir)?;
    let _ = std::fs::remove_file(out);
    let f = std::fs::File::create(out).map_err(|e| VmError::Setup(format!("{}: {e}", out.display())))?;
    f.set_len(2 * 1024 * 1024).map_err(|e| VmError::Setup(e.to_string()))?;
    drop(f);
    run("mkfs.vfat (making the seed image)", Command::new("mkfs.vfat").args(["-n", "CIDATA"]).arg(out))?;
    let rd = std::fs::read_dir(dir).map_err(|e| VmError::Setup(format!("{}: {e}", dir.display())))?;
    for e in rd.flatten().filter(|e| e.path().is_file()) {
        run(
            "mcopy (filling the seed image)",
            Command::new("mcopy")
                .arg("-i")
                .arg(out)
                .arg(e.path())
                .arg(format!("::{}", e.file_name().to_string_lossy())),
        )?;
    }
    Ok(())
}

/// Writes the three files into `dir` (network-config only when given).
pub fn write_dir(dir: &Path, meta: &str, user: &str, network: Option<&str>) -> Result<(), VmError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| VmError::Host(e.to_string()))?;
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|e| VmError::Host(e.to_string()));
    w("meta-data", meta)?;
    w("user-data", user)?;
    if let Some(n) = network {
        w("network-config", n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("lw-seed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The images carry the label the init's own readers look for.
    #[test]
    fn both_images_are_found_by_the_init_label_readers() {
        let d = scratch("images");
        let src = d.join("seed");
        write_dir(&src, "instance-id: t\n", "#cloud-config\nhostname: t\n", None).unwrap();
        let head = |p: &Path| {
            let mut b = std::fs::read(p).unwrap();
            b.truncate(PROBE_LEN);
            b
        };
        use lightwhale_init::persist::header::{seed_kind, SeedFs, PROBE_LEN};
        iso(&src, &d.join("seed.iso")).unwrap();
        assert_eq!(seed_kind(&head(&d.join("seed.iso"))), Some(SeedFs::Iso9660));
        vfat(&src, &d.join("seed.img")).unwrap();
        assert_eq!(seed_kind(&head(&d.join("seed.img"))), Some(SeedFs::Vfat));
        let listing = Command::new("mdir").args(["-b", "-i"]).arg(d.join("seed.img")).output().unwrap();
        assert!(String::from_utf8_lossy(&listing.stdout).contains("user-data"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_without_meta_data_says_what_to_write() {
        let d = scratch("empty");
        let e = iso(&d, &d.join("x.iso")).unwrap_err().to_string();
        assert!(e.contains("has no meta-data") && e.contains("instance-id"), "{e}");
        let e = iso(&d.join("missing"), &d.join("x.iso")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
