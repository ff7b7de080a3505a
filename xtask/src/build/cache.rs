//! What the build keeps outside the checkout, between runs: downloaded .debs, the package
//! lists that pin their versions, and the chroot with Nix that evaluates the flake. This
//! module alone decides where each lives; every step asks it (a unit test below fails when
//! a step names a path of its own under the cache).

use std::path::{Path, PathBuf};

/// The cache's root: `$LIGHTWHALE_CACHE`, else `$XDG_CACHE_HOME/lightwhale`, else
/// `~/.cache/lightwhale`.
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn from_env() -> Cache {
        let root = std::env::var_os("LIGHTWHALE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
            });
            base.join("lightwhale")
        });
        Cache { root }
    }

    #[cfg(test)]
    pub fn at(root: &Path) -> Cache {
        Cache { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every .deb any step downloaded (the rootfs's packages, the signed boot loaders, the
    /// Nix chroot's packages go through mmdebstrap's own cache instead).
    pub fn debs(&self) -> PathBuf {
        self.root.join("debs")
    }

    /// The package lists of `suite` with these archive components (besides `main`). They
    /// are reused without `apt update` (same index, same package versions), so they are
    /// keyed by what they index. The rootfs stage fetches them; every later step that
    /// resolves a package reads the same directory.
    pub fn package_lists(&self, suite: &str, components: &[String]) -> PathBuf {
        self.root.join(lists_dir_name(suite, components))
    }

    /// The Debian chroot with Nix in which the flake is evaluated.
    pub fn nix_chroot(&self, suite: &str) -> PathBuf {
        self.root.join(format!("nix-{suite}-chroot"))
    }

    /// mmdebstrap's output while it makes that chroot.
    pub fn nix_chroot_log(&self) -> PathBuf {
        self.root.join("nix-chroot.log")
    }
}

/// Pure: the name of a package lists directory.
fn lists_dir_name(suite: &str, components: &[String]) -> String {
    let extra: Vec<&str> = components.iter().map(String::as_str).filter(|c| *c != "main").collect();
    if extra.is_empty() {
        format!("lists-{suite}")
    } else {
        format!("lists-{suite}-{}", extra.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lists_are_keyed_by_their_components() {
        assert_eq!(lists_dir_name("trixie", &[]), "lists-trixie");
        assert_eq!(lists_dir_name("trixie", &["main".into()]), "lists-trixie");
        assert_eq!(
            lists_dir_name("trixie", &["non-free-firmware".into(), "contrib".into()]),
            "lists-trixie-non-free-firmware+contrib"
        );
        let c = Cache::at(Path::new("/c"));
        assert_eq!(
            c.package_lists("trixie", &["non-free-firmware".into()]),
            Path::new("/c/lists-trixie-non-free-firmware")
        );
    }

    /// The bug this module exists for: the secure boot step looked for `lists-trixie` while
    /// the rootfs stage, once the firmware module added a component, kept its lists in
    /// `lists-trixie-non-free-firmware`. No source file but this one may build a path under
    /// the cache by itself.
    #[test]
    fn no_step_names_a_cache_path_of_its_own() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let this = src.join("build/cache.rs");
        let mut offenders = Vec::new();
        for entry in walkdir::WalkDir::new(&src).into_iter().flatten() {
            let path = entry.path();
            if path == this || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let named = ["\"lists-", "lists-{", "cache.join(", "cache.root().join(", "\"nix-chroot", "\"debs\""]
                    .iter()
                    .any(|p| line.contains(p));
                if named {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(offenders.is_empty(), "ask build::cache::Cache for these paths instead:\n{}", offenders.join("\n"));
    }
}
