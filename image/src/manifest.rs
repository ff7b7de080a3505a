//! `modules/<name>/module.toml`: what each image feature contributes. The flake reads the
//! same files with `builtins.fromTOML` (nix/manifest.nix), so both build paths agree on
//! the contents; `cargo xtask test` compares the two readings.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("manifest.rs");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleToml {
    pub description: String,
    #[serde(default)]
    pub debian: Debian,
    #[serde(default)]
    pub nix: Nix,
    #[serde(default)]
    pub initramfs: Initramfs,
    #[serde(default)]
    pub users: Vec<User>,
    /// System groups the module's programs need (Debian's packages create them; the Nix
    /// path creates them from here).
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Locked accounts for the module's daemons, likewise.
    #[serde(default)]
    pub system_users: Vec<SystemUser>,
    #[serde(default)]
    pub prune: Prune,
    #[serde(default)]
    pub workspace: Workspace,
    #[serde(default)]
    pub firmware: Firmware,
}

/// What the module takes from this repository itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// Workspace binaries (each the package and binary of that name), installed as
    /// /usr/sbin/<name> on both build paths.
    #[serde(default)]
    pub binaries: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debian {
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub stubs: Vec<Stub>,
    /// Archive components besides `main` the packages come from (`non-free-firmware`).
    #[serde(default)]
    pub components: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stub {
    pub name: String,
    pub provides: Vec<String>,
}

/// The Nix path's view of the module: nixpkgs attributes, and where their files go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nix {
    /// nixpkgs attribute paths (`docker`, `pkgsStatic.busybox`); their bin/ and sbin/
    /// are linked into /usr/bin (and /usr/sbin, /bin, /sbin point there).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Image path -> `attribute:path inside its output`: files the Debian packages put
    /// where programs look for them (a CLI plugin, /etc/ssh/moduli, the CA bundle).
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// nixpkgs attributes whose `lib/firmware` the kept drivers' firmware is taken from
    /// (only the files they ask for; see `firmware`): not part of the closure.
    #[serde(default)]
    pub firmware: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Initramfs {
    #[serde(default)]
    pub kernel_modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_shell")]
    pub shell: String,
}

fn default_shell() -> String {
    "/bin/sh".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Fixed id; otherwise the highest free system id (as `groupadd --system`).
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemUser {
    pub name: String,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub comment: String,
    pub home: String,
}

/// Paths removed from the image after packages are installed (globs relative to /).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    #[serde(default)]
    pub paths: Vec<String>,
    /// Kernel module files or directories (below lib/modules/<release>/kernel) to remove;
    /// a module that a kept module depends on stays.
    #[serde(default)]
    pub drop_kernel_modules: Vec<String>,
    /// Kernel modules the image must keep, whatever the drop lists say: the build fails
    /// if one is missing (a later pruning cannot drop them silently).
    #[serde(default)]
    pub require_kernel_modules: Vec<String>,
    /// Files (relative to /) that keep their setuid or setgid bit; every other file loses it.
    #[serde(default)]
    pub keep_setuid: Vec<String>,
}

/// Which firmware files the image ships, beyond "what a kept kernel module asks for"
/// (image/src/firmware.rs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// Kernel module directories or files (below lib/modules/<release>/kernel, as in
    /// `drop_kernel_modules`) whose firmware ships; none listed: every kept module's.
    #[serde(default)]
    pub drivers: Vec<String>,
    /// Files that drivers look for in several API versions, newest first, with `{N}` for
    /// the version (`iwlwifi-*-{N}.ucode`): only the newest one present at or below the
    /// version the driver asks for is shipped.
    #[serde(default)]
    pub api_versions: Vec<String>,
    /// Globs of firmware files a kept driver asks for that the image leaves out anyway
    /// (chips too rare or too old for what their firmware costs).
    #[serde(default)]
    pub skip: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub dir: PathBuf,
    pub toml: ModuleToml,
}

impl Module {
    /// Files for both images.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// Files only the Nix image needs, because on Debian a package provides them.
    pub fn nix_rootfs(&self) -> PathBuf {
        self.dir.join("nix-rootfs")
    }
    pub fn init_ron(&self) -> PathBuf {
        self.dir.join("init.ron")
    }
}

/// All modules in name order.
pub fn load(modules_dir: &Path) -> Result<Vec<Module>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(modules_dir).ctx("modules", modules_dir)?;
    for e in rd.flatten() {
        let dir = e.path();
        let path = dir.join("module.toml");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).ctx("modules", &path)?;
        let toml: ModuleToml = toml::from_str(&text)
            .map_err(|e| Error::Step { step: "modules", message: format!("{}: {e}", path.display()) })?;
        out.push(Module { name: e.file_name().to_string_lossy().into_owned(), dir, toml });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.is_empty() {
        return Err(Error::Step {
            step: "modules",
            message: format!("no module.toml under {}", modules_dir.display()),
        });
    }
    Ok(out)
}

pub fn debian_packages(modules: &[Module]) -> Vec<String> {
    let mut v: Vec<String> = modules.iter().flat_map(|m| m.toml.debian.packages.iter().cloned()).collect();
    v.sort();
    v.dedup();
    v
}

/// The archive components (besides `main`) of all modules, sorted.
pub fn debian_components(modules: &[Module]) -> Vec<String> {
    let mut v: Vec<String> = modules.iter().flat_map(|m| m.toml.debian.components.iter().cloned()).collect();
    v.sort();
    v.dedup();
    v
}

/// Everything of one kind from all modules, in module order.
pub fn all<'a, T>(modules: &'a [Module], pick: impl Fn(&'a ModuleToml) -> &'a Vec<T>) -> Vec<T>
where
    T: Clone + 'a,
{
    modules.iter().flat_map(|m| pick(&m.toml).iter().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_modules_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules");
        let mods = load(&dir).unwrap();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        for n in ["base", "docker", "network", "ssh"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let pkgs = debian_packages(&mods);
        for p in [
            "docker.io",
            "docker-cli",
            "docker-compose",
            "containerd",
            "runc",
            "openssh-server",
            "sudo",
            "linux-image-amd64",
        ] {
            assert!(pkgs.iter().any(|x| x == p), "{p} missing");
        }
        for m in &mods {
            let nix = &m.toml.nix;
            assert_eq!(
                m.toml.debian.packages.is_empty(),
                nix.packages.is_empty() && nix.firmware.is_empty(),
                "{}: both build paths need packages",
                m.name
            );
        }
        let bins = all(&mods, |m| &m.workspace.binaries);
        assert!(bins.contains(&"lightwhale-compose-apps".to_string()), "{bins:?}");
        assert_eq!(debian_components(&mods), ["non-free-firmware"]);
        let op = mods.iter().flat_map(|m| &m.toml.users).find(|u| u.name == "op").unwrap();
        assert_eq!(op.groups, vec!["sudo".to_string(), "docker".to_string()]);
    }
}
