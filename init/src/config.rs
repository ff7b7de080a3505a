//! Init configuration: each module's `init.ron`, put into the image as
//! `/usr/lib/lightwhale/modules/<module>/init.ron`. All modules' files are merged in module
//! name order, so a module adds services, directories or kernel modules without code.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const CONFIG_DIR: &str = "/usr/lib/lightwhale/modules";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {source}")]
    Parse { path: PathBuf, source: Box<ron::error::SpannedError> },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// One module's `init.ron`. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    #[serde(default)]
    pub filesystems: Filesystems,
    #[serde(default)]
    pub kernel_modules: KernelModules,
    #[serde(default)]
    pub services: Vec<Service>,
}

/// The merged configuration of all modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitConfig {
    pub filesystems: Filesystems,
    pub kernel_modules: KernelModules,
    pub services: Vec<Service>,
}

/// Which directories are persisted, which are writable in RAM.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Filesystems {
    /// Overlaid from the persistence device (or its tmpfs stand-in).
    #[serde(default)]
    pub persisted: Vec<String>,
    /// Overlaid with a RAM upper layer: writable, back to the image's content on reboot.
    #[serde(default)]
    pub volatile: Vec<String>,
    /// Empty RAM filesystems.
    #[serde(default)]
    pub tmpfs: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KernelModules {
    /// Loaded on every boot, whatever the hardware (filesystems, for instance).
    #[serde(default)]
    pub load: Vec<String>,
    /// Never loaded by coldplug, even when a device asks for them.
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub enum Condition {
    /// A default route exists (DHCP finished), so DNS and registries are reachable.
    NetworkOnline {
        timeout_secs: u64,
    },
    PathExists {
        path: String,
        timeout_secs: u64,
    },
}

impl Condition {
    pub fn timeout_secs(&self) -> u64 {
        match self {
            Condition::NetworkOnline { timeout_secs } | Condition::PathExists { timeout_secs, .. } => *timeout_secs,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Restart {
    #[default]
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Output {
    /// Appended to `/var/log/<name>.log`.
    #[default]
    LogFile,
    /// /dev/null: for programs that open their own terminal (getty).
    Null,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// argv; the program path is absolute.
    pub exec: Vec<String>,
    /// Commands run (in order) before each start, e.g. creating runtime directories.
    #[serde(default)]
    pub setup: Vec<Vec<String>>,
    #[serde(default)]
    pub wait_for: Vec<Condition>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default)]
    pub output: Output,
    /// Signal that asks the service to stop (default SIGTERM; gettys need SIGHUP, which
    /// login passes on to the shell, because an interactive bash ignores SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    /// Then SIGKILL after this long at shutdown.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u64,
    /// Start only when this path exists (e.g. Wi-Fi configured).
    #[serde(default)]
    pub only_if_exists: Option<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

fn default_stop_signal() -> String {
    "SIGTERM".into()
}

fn default_stop_timeout() -> u64 {
    10
}

pub fn parse_module(text: &str, path: &Path) -> Result<ModuleConfig, ConfigError> {
    let cfg: ModuleConfig =
        ron::from_str(text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })?;
    let fs = &cfg.filesystems;
    for d in fs.persisted.iter().chain(&fs.volatile).chain(&fs.tmpfs) {
        if !d.starts_with('/') || d == "/" || d.contains("..") || d.ends_with('/') {
            return Err(ConfigError::Invalid {
                path: path.into(),
                problem: format!("{d:?} must be an absolute directory path other than / (no .., no trailing /)"),
            });
        }
    }
    for s in &cfg.services {
        if s.exec.first().is_none_or(|p| !p.starts_with('/')) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                problem: format!("service {}: exec must start with an absolute program path", s.name),
            });
        }
        if s.stop_signal.parse::<nix::sys::signal::Signal>().is_err() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                problem: format!(
                    "service {}: stop_signal {:?} is not a signal name like \"SIGTERM\"",
                    s.name, s.stop_signal
                ),
            });
        }
    }
    Ok(cfg)
}

/// Reads `<dir>/<module>/init.ron` for every module, in module name order, and merges them.
pub fn load(dir: &Path) -> Result<InitConfig, ConfigError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ConfigError::Read { path: dir.into(), source })?
        .flatten()
        .map(|e| e.path().join("init.ron"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    let mut all = InitConfig::default();
    for p in files {
        let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        let m = parse_module(&text, &p)?;
        all.filesystems.persisted.extend(m.filesystems.persisted);
        all.filesystems.volatile.extend(m.filesystems.volatile);
        all.filesystems.tmpfs.extend(m.filesystems.tmpfs);
        all.kernel_modules.load.extend(m.kernel_modules.load);
        all.kernel_modules.deny.extend(m.kernel_modules.deny);
        for s in m.services {
            if all.services.iter().any(|x| x.name == s.name) {
                return Err(ConfigError::Invalid { path: p, problem: format!("service {} is defined twice", s.name) });
            }
            all.services.push(s);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules")
    }

    #[test]
    fn shipped_filesystems_config_persists_the_documented_dirs() {
        let fs = load(&modules_dir()).unwrap().filesystems;
        for d in ["/etc", "/home", "/root", "/var/www"] {
            assert!(fs.persisted.iter().any(|p| p == d), "{d} not persisted: {fs:?}");
        }
        assert!(fs.volatile.iter().any(|p| p == "/var"));
    }

    #[test]
    fn shipped_services_parse_and_docker_waits_for_network() {
        let s = load(&modules_dir()).unwrap().services;
        let dockerd = s.iter().find(|s| s.name == "dockerd").expect("dockerd service");
        assert!(dockerd.wait_for.iter().any(|c| matches!(c, Condition::NetworkOnline { .. })));
        for name in ["sshd", "dhcpcd", "containerd", "getty-ttyS0", "getty-tty1"] {
            assert!(s.iter().any(|x| x.name == name), "{name} missing");
        }
    }

    #[test]
    fn rejects_relative_and_root_dirs() {
        let p = Path::new("t.ron");
        let fs = |inner: &str| parse_module(&format!("(filesystems: ({inner}))"), p);
        assert!(fs("persisted: [\"etc\"]").is_err());
        assert!(fs("persisted: [\"/\"]").is_err());
        assert!(fs("persisted: [\"/var/../etc\"]").is_err());
        assert!(fs("persisted: [\"/etc\"], typo: []").is_err());
        assert!(fs("persisted: [\"/etc\"]").is_ok());
    }

    #[test]
    fn service_defaults_and_bad_exec() {
        let p = Path::new("s.ron");
        let svc = |inner: &str| parse_module(&format!("(services: [({inner})])"), p);
        let s = svc("name: \"x\", exec: [\"/bin/x\"]").unwrap().services;
        assert_eq!(s[0].restart, Restart::Always);
        assert_eq!(s[0].stop_timeout_secs, 10);
        assert!(svc("name: \"x\", exec: [\"x\"]").is_err());
        assert!(svc("name: \"x\", exec: []").is_err());
        assert!(svc("name: \"x\", exec: [\"/bin/x\"], stop_signal: \"SIGNOPE\"").is_err());
        assert_eq!(
            svc("name: \"x\", exec: [\"/bin/x\"], stop_signal: \"SIGHUP\"").unwrap().services[0].stop_signal,
            "SIGHUP"
        );
    }
}
