//! What the modules put into a root tree on both build paths: their files, their init
//! configuration, the directories the init mounts over, the release file, and no
//! per-machine state.

use crate::error::{Error, IoContext, Result};
use crate::manifest::Module;
use std::path::Path;

const STEP: &str = "module files";

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("install.rs");

/// Which build path the tree is for: the Nix image also gets each module's `nix-rootfs/`
/// (files a Debian package provides on the other path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPath {
    Debian,
    Nix,
}

/// Copies each module's files and init.ron into the tree, then makes the directories the
/// init mounts over (persisted, volatile, tmpfs, the persistence mount point).
pub fn module_files(tree: &Path, modules: &[Module], path: BuildPath) -> Result<()> {
    for m in modules {
        let mut dirs = vec![m.rootfs()];
        if path == BuildPath::Nix {
            dirs.push(m.nix_rootfs());
        }
        for d in dirs.iter().filter(|d| d.is_dir()) {
            crate::tree::copy_tree(d, tree)?;
        }
        let dst = tree.join(lightwhale_types::constants::CONFIG_DIR.trim_start_matches('/')).join(&m.name);
        if m.init_ron().is_file() {
            std::fs::create_dir_all(&dst).ctx(STEP, &dst)?;
            std::fs::copy(m.init_ron(), dst.join("init.ron")).ctx(STEP, &dst)?;
        }
        // The module's seccomp profiles go next to its init.ron, where the init looks.
        let profiles = m.dir.join(lightwhale_types::constants::SECCOMP_DIR);
        if profiles.is_dir() {
            let into = dst.join(lightwhale_types::constants::SECCOMP_DIR);
            std::fs::create_dir_all(&into).ctx(STEP, &into)?;
            crate::tree::copy_tree(&profiles, &dst.join(lightwhale_types::constants::SECCOMP_DIR))?;
        }
    }
    let cfg =
        lightwhale_types::config::load(&tree.join(lightwhale_types::constants::CONFIG_DIR.trim_start_matches('/')))
            .map_err(|e| Error::Step { step: STEP, message: e.to_string() })?;
    let fs = &cfg.filesystems;
    for d in fs
        .persisted
        .iter()
        .chain(&fs.volatile)
        .chain(&fs.tmpfs)
        .map(String::as_str)
        .chain([lightwhale_types::constants::DATA_MOUNT_POINT])
    {
        let p = tree.join(d.trim_start_matches('/'));
        std::fs::create_dir_all(&p).ctx(STEP, &p)?;
    }
    Ok(())
}

/// Where a module's workspace binary goes in the image (module.toml `[workspace] binaries`);
/// the flake links the same path to the binary it builds.
pub fn workspace_binary_path(name: &str) -> String {
    format!("usr/sbin/{name}")
}

/// Copies the modules' workspace binaries, built for the image, into it (mode 0755).
pub fn workspace_binaries(tree: &Path, bins: &[(String, std::path::PathBuf)]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (name, built) in bins {
        let dst = tree.join(workspace_binary_path(name));
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).ctx(STEP, d)?;
        }
        std::fs::copy(built, &dst).ctx(STEP, built)?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).ctx(STEP, &dst)?;
    }
    Ok(())
}

/// The release file's text, in os-release's format (it is the system's os-release too).
/// `origin` names where the packages came from (`DEBIAN_SUITE=trixie`, or the nixpkgs
/// revision).
pub fn release_text(version: &str, build_id: &str, epoch: u64, origin: (&str, &str)) -> String {
    format!(
        "PRETTY_NAME=\"Lightwhale {version}\"\nNAME=Lightwhale\nID=lightwhale\nVERSION={version}\nVERSION_ID={version}\nBUILD_ID={build_id}\nBUILD_DATE={epoch}\n{}={}\nHOME_URL=https://lightwhale.asklandd.dk/\n",
        origin.0, origin.1
    )
}

/// Writes the release file where the init reads it (/usr, immutable), links
/// /etc/lightwhale-release to it, and makes it the system's os-release (what `docker info`
/// and the console's login prompt name), replacing Debian's.
pub fn write_release(tree: &Path, text: &str) -> Result<()> {
    use lightwhale_types::release::{ETC_LINK, PATH};
    write(tree, PATH.trim_start_matches('/'), text)?;
    write(tree, "usr/lib/os-release", text)?;
    for (link, target) in [(ETC_LINK, PATH), ("/etc/os-release", "/usr/lib/os-release")] {
        let link = tree.join(link.trim_start_matches('/'));
        let _ = std::fs::remove_file(&link);
        let target = Path::new("..").join(target.trim_start_matches('/'));
        std::os::unix::fs::symlink(&target, &link).ctx(STEP, &link)?;
    }
    Ok(())
}

/// Writes a file below the tree, making its directory.
pub fn write(tree: &Path, rel: &str, text: &str) -> Result<()> {
    let p = tree.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).ctx(STEP, parent)?;
    }
    std::fs::write(&p, text).ctx(STEP, &p)
}

/// Per-machine state must be created on the machine (SSH host keys, machine-id), and
/// build leftovers must not reach the image.
pub fn remove_machine_state(tree: &Path) -> Result<()> {
    for p in [
        "etc/ssh/ssh_host_*",
        "etc/machine-id",
        // The name comes from the machine id unless someone sets one (lightwhale_types::hostname).
        "etc/hostname",
        "var/lib/dbus/machine-id",
        "etc/resolv.conf",
        "boot/*",
        "var/log/*",
        "var/cache/*",
        "tmp/*",
        "var/tmp/*",
        "etc/.pwd.lock",
        "etc/*-",
    ] {
        crate::tree::remove_glob(tree, p)?;
    }
    write(tree, "etc/resolv.conf", "")?;
    write(tree, "etc/machine-id", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_its_origin() {
        let t = release_text("0.1.0", "abc", 5, ("DEBIAN_SUITE", "trixie"));
        assert!(t.starts_with("PRETTY_NAME=\"Lightwhale 0.1.0\"\nNAME=Lightwhale\n"), "{t}");
        assert!(t.contains("\nBUILD_ID=abc\nBUILD_DATE=5\nDEBIAN_SUITE=trixie\n"), "{t}");
        let r = lightwhale_types::release::parse(&t);
        assert_eq!((r.version.as_str(), r.build_id.as_str(), r.build_date), ("0.1.0", "abc", 5));
    }
}
