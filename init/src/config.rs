//! The init configuration as the init uses it: `lightwhale_types::config` reads and checks
//! each module's `init.ron` and seccomp profiles; here every profile is also compiled, so
//! one that names an unknown syscall stops the boot with its name before any service starts.

use crate::sandbox::seccomp::{self, Mode};
pub use lightwhale_types::config::*;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
}

/// Reads and merges every module's configuration (`lightwhale_types::config::load`) and
/// compiles each seccomp profile once.
pub fn load(dir: &Path) -> Result<InitConfig, LoadError> {
    let config = lightwhale_types::config::load(dir)?;
    for profile in config.seccomp.values() {
        seccomp::compile(profile, Mode::Enforce)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    #[test]
    fn the_shared_names_are_the_kernels_numbers() {
        let caps = caps::all();
        assert_eq!(caps.len(), lightwhale_types::names::CAPABILITIES.len(), "a capability is missing from the table");
        for cap in caps {
            assert_eq!(lightwhale_types::names::capability(&cap.to_string()), Some(cap.index()), "{cap}");
        }
        for (name, number) in lightwhale_types::names::SIGNALS {
            assert_eq!(Signal::try_from(number).map(|s| s.as_str()), Ok(name));
        }
    }

    #[test]
    fn an_unknown_syscall_in_a_module_stops_the_load() {
        let dir = std::env::temp_dir().join(format!("lw-config-syscall-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/seccomp")).unwrap();
        std::fs::write(dir.join("a/seccomp/x.ron"), "AllowOnly(syscalls: [\"read\", \"reed\"])").unwrap();
        let e = super::load(&dir).unwrap_err().to_string();
        assert!(e.contains("seccomp profile x") && e.contains("syscall name"), "{e}");
        assert!(lightwhale_types::config::load(&dir).is_ok(), "the shared reader checks no syscall names");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
