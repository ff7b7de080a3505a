//! Init configuration: each module's `init.ron`, put into the image as
//! `/usr/lib/lightwhale/modules/<module>/init.ron`. All modules' files are merged in module
//! name order, so a module adds services, directories or kernel modules without code.

use crate::seccomp;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::constants::{CONFIG_DIR, SECCOMP_DIR};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {source}")]
    Parse { path: PathBuf, source: Box<ron::error::SpannedError> },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("{0}")]
    Seccomp(#[from] seccomp::ProfileError),
}

/// One module's `init.ron`. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct RawModuleConfig {
    #[serde(default)]
    filesystems: Filesystems,
    #[serde(default)]
    kernel_modules: KernelModules,
    #[serde(default)]
    services: Vec<ServiceSpec>,
}

/// One module's checked configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleConfig {
    pub filesystems: Filesystems,
    pub kernel_modules: KernelModules,
    pub services: Vec<Service>,
}

/// The merged configuration of all modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitConfig {
    pub filesystems: Filesystems,
    pub kernel_modules: KernelModules,
    pub services: Vec<Service>,
    /// Every module's seccomp profiles, by name.
    pub seccomp: BTreeMap<String, seccomp::Named>,
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
    /// An HTTP server on a Unix socket answers `GET path` with 200 (Docker's `/_ping`
    /// answers once Docker serves its API, seconds after it created the socket).
    HttpOk {
        socket: String,
        path: String,
        timeout_secs: u64,
    },
}

impl Condition {
    pub fn timeout_secs(&self) -> u64 {
        match self {
            Condition::NetworkOnline { timeout_secs }
            | Condition::PathExists { timeout_secs, .. }
            | Condition::HttpOk { timeout_secs, .. } => *timeout_secs,
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

/// A directory the init makes before each start of a service (the init's service/dirs.rs).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub path: String,
    /// The user who owns it, with that user's primary group; root when not given.
    #[serde(default)]
    pub owner: Option<String>,
    /// Permission bits (`Some(0o750)`); when not given, a new directory gets 0755 and an
    /// existing one keeps its mode.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// A service as written in `init.ron`; `parse_module` checks it and turns it into a
/// `Service`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    exec: Vec<String>,
    #[serde(default)]
    directories: Vec<Directory>,
    #[serde(default)]
    setup: Vec<Vec<String>>,
    #[serde(default)]
    wait_for: Vec<Condition>,
    #[serde(default)]
    restart: Restart,
    #[serde(default)]
    output: Output,
    #[serde(default = "default_stop_signal")]
    stop_signal: String,
    #[serde(default = "default_stop_timeout")]
    stop_timeout_secs: u64,
    #[serde(default)]
    only_if_exists: Option<String>,
    #[serde(default)]
    env: Vec<(String, String)>,
    /// Required: every service says what it may do, so no service is root with every
    /// capability by omission.
    sandbox: SandboxSpec,
}

/// The capability bounding set of a service, by name (`CAP_NET_ADMIN`, as in
/// capabilities(7)).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub enum CapsSpec {
    /// Every capability: say why in a comment next to it.
    All,
    Only(Vec<String>),
    AllExcept(Vec<String>),
    /// The administrator's set (`ADMINISTRATOR_DROPS`): for the gettys and sshd, whose
    /// login shells and `sudo` inherit it.
    Administrator,
}

/// What an administrator's login (a getty's or sshd's, and so the shell's and sudo's) does
/// without: everything else administration of a Docker host needs stays. docs/security.md.
pub const ADMINISTRATOR_DROPS: [&str; 8] = [
    // eBPF-free: nothing on the system loads BPF programs or traces the kernel (runc's
    // device filter is loaded by containerd's children).
    "CAP_BPF",
    "CAP_PERFMON",
    // Raw port I/O and /dev/mem: no administration task needs them.
    "CAP_SYS_RAWIO",
    // AppArmor policy is dockerd's to load; a shell that could replace docker-default could
    // unconfine every container.
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    // A server that never suspends, and no CRIU in the image.
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_CHECKPOINT_RESTORE",
];

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LandlockSpec {
    #[serde(default)]
    pub read_only: Vec<String>,
    #[serde(default)]
    pub read_write: Vec<String>,
}

/// A service's sandbox as written in `init.ron` (applied in this order; see the init's sandbox/mod.rs).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct SandboxSpec {
    capabilities: CapsSpec,
    /// Kept across exec by a service that runs as `user` (must be in the bounding set).
    #[serde(default)]
    ambient: Vec<String>,
    #[serde(default)]
    user: Option<String>,
    /// The user's primary group when not given.
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    no_new_privs: bool,
    /// Without it the service sees the whole filesystem (with its own permissions).
    #[serde(default)]
    landlock: Option<LandlockSpec>,
    /// The name of a profile in some module's `seccomp/` directory.
    #[serde(default)]
    seccomp: Option<String>,
}

/// A checked service sandbox. Capability sets are bitmasks (bit n = capability n), which
/// is also how `/proc/<pid>/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSandbox {
    /// `None`: the bounding set is left as the init's (every capability).
    pub bounding: Option<u64>,
    pub ambient: u64,
    pub user: Option<String>,
    pub group: Option<String>,
    pub no_new_privs: bool,
    pub landlock: Option<LandlockSpec>,
    pub seccomp: Option<String>,
}

impl ServiceSandbox {
    /// The CapBnd a process of this service shows, on a kernel whose last capability is
    /// `last_cap`.
    pub fn expected_cap_bnd(&self, last_cap: u8) -> u64 {
        let all = if last_cap >= 63 { u64::MAX } else { (1u64 << (last_cap + 1)) - 1 };
        self.bounding.unwrap_or(u64::MAX) & all
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// argv; the program path is absolute.
    pub exec: Vec<String>,
    /// Made before each start, before the setup commands and outside the sandbox.
    pub directories: Vec<Directory>,
    /// Commands run (in order) before each start, e.g. creating runtime directories. They
    /// come from the image's configuration and run before (outside) the service's sandbox,
    /// so they can make the directories its Landlock rules name.
    pub setup: Vec<Vec<String>>,
    pub wait_for: Vec<Condition>,
    pub restart: Restart,
    pub output: Output,
    /// Signal that asks the service to stop (default SIGTERM; gettys need SIGHUP, which
    /// login passes on to the shell, because an interactive bash ignores SIGTERM).
    /// (A signal number; `names::SIGNALS` are the ones a module may name.)
    pub stop_signal: i32,
    /// Then SIGKILL after this long at shutdown.
    pub stop_timeout_secs: u64,
    /// Start only when this path exists (e.g. Wi-Fi configured).
    pub only_if_exists: Option<String>,
    pub env: Vec<(String, String)>,
    pub sandbox: ServiceSandbox,
    /// The init.ron it came from, for messages.
    pub source: PathBuf,
}

fn default_stop_signal() -> String {
    "SIGTERM".into()
}

fn default_stop_timeout() -> u64 {
    10
}

/// Pure: a list of capability names as a bitmask; the first unknown name is the error.
pub fn cap_mask(names: &[String]) -> Result<u64, String> {
    let mut mask = 0u64;
    for n in names {
        let cap = crate::names::capability(n)
            .ok_or_else(|| format!("unknown capability {n:?} (names as in capabilities(7), e.g. \"CAP_NET_ADMIN\")"))?;
        mask |= 1u64 << cap;
    }
    Ok(mask)
}

fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.contains("..") {
        return Err(format!("{p:?} must be an absolute path without .."));
    }
    Ok(())
}

fn check_sandbox(spec: SandboxSpec) -> Result<ServiceSandbox, String> {
    let bounding = match &spec.capabilities {
        CapsSpec::All => None,
        CapsSpec::Only(names) => Some(cap_mask(names)?),
        CapsSpec::AllExcept(names) => Some(!cap_mask(names)?),
        CapsSpec::Administrator => Some(!cap_mask(&ADMINISTRATOR_DROPS.map(String::from))?),
    };
    let ambient = cap_mask(&spec.ambient)?;
    if ambient & !bounding.unwrap_or(u64::MAX) != 0 {
        return Err("ambient capabilities must also be in the bounding set".into());
    }
    if spec.group.is_some() && spec.user.is_none() {
        return Err("group needs user".into());
    }
    if spec.seccomp.is_some() && spec.user.is_some() && !spec.no_new_privs {
        return Err("a seccomp profile for a service that runs as a user needs no_new_privs: true".into());
    }
    for p in spec.landlock.iter().flat_map(|l| l.read_only.iter().chain(&l.read_write)) {
        check_path(p)?;
    }
    Ok(ServiceSandbox {
        bounding,
        ambient,
        user: spec.user,
        group: spec.group,
        no_new_privs: spec.no_new_privs,
        landlock: spec.landlock,
        seccomp: spec.seccomp,
    })
}

fn check_service(s: ServiceSpec, path: &Path) -> Result<Service, ConfigError> {
    let invalid =
        |problem: String| ConfigError::Invalid { path: path.into(), problem: format!("service {}: {problem}", s.name) };
    if s.exec.first().is_none_or(|p| !p.starts_with('/')) {
        return Err(invalid("exec must start with an absolute program path".into()));
    }
    let stop_signal = crate::names::signal(&s.stop_signal)
        .ok_or_else(|| invalid(format!("stop_signal {:?} is not a signal name like \"SIGTERM\"", s.stop_signal)))?;
    for d in &s.directories {
        check_path(&d.path).map_err(|p| invalid(format!("directories: {p}")))?;
        if let Some(mode) = d.mode.filter(|m| *m > 0o7777) {
            return Err(invalid(format!("directories: {}: mode {mode:#o} is not a permission mode", d.path)));
        }
    }
    let sandbox = check_sandbox(s.sandbox.clone()).map_err(|p| invalid(format!("sandbox: {p}")))?;
    Ok(Service {
        name: s.name,
        exec: s.exec,
        directories: s.directories,
        setup: s.setup,
        wait_for: s.wait_for,
        restart: s.restart,
        output: s.output,
        stop_signal,
        stop_timeout_secs: s.stop_timeout_secs,
        only_if_exists: s.only_if_exists,
        env: s.env,
        sandbox,
        source: path.into(),
    })
}

pub fn parse_module(text: &str, path: &Path) -> Result<ModuleConfig, ConfigError> {
    let raw: RawModuleConfig =
        ron::from_str(text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })?;
    let fs = &raw.filesystems;
    for d in fs.persisted.iter().chain(&fs.volatile).chain(&fs.tmpfs) {
        if !d.starts_with('/') || d == "/" || d.contains("..") || d.ends_with('/') {
            return Err(ConfigError::Invalid {
                path: path.into(),
                problem: format!("{d:?} must be an absolute directory path other than / (no .., no trailing /)"),
            });
        }
    }
    let services = raw.services.into_iter().map(|s| check_service(s, path)).collect::<Result<Vec<_>, _>>()?;
    Ok(ModuleConfig { filesystems: raw.filesystems, kernel_modules: raw.kernel_modules, services })
}

/// Reads `<dir>/<module>/init.ron` for every module, in module name order, and merges them.
pub fn load(dir: &Path) -> Result<InitConfig, ConfigError> {
    let mut modules: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ConfigError::Read { path: dir.into(), source })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    modules.sort();
    let mut all = InitConfig::default();
    for m in &modules {
        seccomp::load_dir(&m.join(SECCOMP_DIR), &mut all.seccomp)?;
    }
    for p in modules.iter().map(|m| m.join("init.ron")).filter(|p| p.exists()) {
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
            check_profile_exists(&s, &all.seccomp)?;
            all.services.push(s);
        }
    }
    Ok(all)
}

/// A profile name that matches no file is an error now, never a service that silently
/// runs without its filter.
fn check_profile_exists(s: &Service, profiles: &BTreeMap<String, seccomp::Named>) -> Result<(), ConfigError> {
    match &s.sandbox.seccomp {
        Some(name) if !profiles.contains_key(name) => Err(ConfigError::Invalid {
            path: s.source.clone(),
            problem: format!(
                "service {}: seccomp profile {name:?} does not exist (known: {}; a profile is a file seccomp/<name>.ron in a module)",
                s.name,
                profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }),
        _ => Ok(()),
    }
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

    const SB: &str = "sandbox: (capabilities: All)";

    #[test]
    fn service_directories_parse_with_defaults_and_bad_ones_are_refused() {
        let p = Path::new("d.ron");
        let svc = |dirs: &str| {
            parse_module(&format!("(services: [(name: \"x\", exec: [\"/bin/x\"], directories: [{dirs}], {SB})])"), p)
        };
        let d = &svc("(path: \"/run/x\"), (path: \"/run/y\", owner: Some(\"u\"), mode: Some(0o750))").unwrap().services
            [0]
        .directories;
        assert_eq!(d[0], Directory { path: "/run/x".into(), owner: None, mode: None });
        assert_eq!(d[1], Directory { path: "/run/y".into(), owner: Some("u".into()), mode: Some(0o750) });
        let e = svc("(path: \"run/x\")").unwrap_err().to_string();
        assert!(e.contains("service x") && e.contains("directories") && e.contains("run/x"), "{e}");
        assert!(svc("(path: \"/run/x\", mode: Some(0o17777))").unwrap_err().to_string().contains("mode"));
        assert!(svc("(path: \"/run/x\", user: \"u\")").is_err(), "unknown field");
        // The shipped chronyd gets its runtime directory as chronyd insists on having it.
        let s = load(&modules_dir()).unwrap().services;
        let chronyd = s.iter().find(|s| s.name == "chronyd").expect("chronyd service");
        assert!(chronyd.directories.contains(&Directory {
            path: "/run/chrony".into(),
            owner: Some("_chrony".into()),
            mode: Some(0o750)
        }));
    }

    #[test]
    fn service_defaults_and_bad_exec() {
        let p = Path::new("s.ron");
        let svc = |inner: &str| parse_module(&format!("(services: [({inner}, {SB})])"), p);
        let s = svc("name: \"x\", exec: [\"/bin/x\"]").unwrap().services;
        assert_eq!(s[0].restart, Restart::Always);
        assert_eq!(s[0].stop_timeout_secs, 10);
        assert_eq!(s[0].stop_signal, libc::SIGTERM);
        assert!(svc("name: \"x\", exec: [\"x\"]").is_err());
        assert!(svc("name: \"x\", exec: []").is_err());
        let e = svc("name: \"x\", exec: [\"/bin/x\"], stop_signal: \"SIGNOPE\"").unwrap_err().to_string();
        assert!(e.contains("s.ron") && e.contains("service x") && e.contains("SIGNOPE"), "{e}");
        assert_eq!(
            svc("name: \"x\", exec: [\"/bin/x\"], stop_signal: \"SIGHUP\"").unwrap().services[0].stop_signal,
            libc::SIGHUP
        );
    }

    #[test]
    fn a_service_without_a_sandbox_is_an_error() {
        let e = parse_module("(services: [(name: \"x\", exec: [\"/bin/x\"])])", Path::new("s.ron")).unwrap_err();
        assert!(e.to_string().contains("sandbox"), "{e}");
    }

    #[test]
    fn capabilities_by_name_and_unknown_names_are_errors() {
        let p = Path::new("/m/net/init.ron");
        let sb = |inner: &str| {
            parse_module(&format!("(services: [(name: \"d\", exec: [\"/bin/d\"], sandbox: ({inner}))])"), p)
                .map(|m| m.services[0].sandbox.clone())
        };
        let s = sb("capabilities: Only([\"CAP_NET_ADMIN\", \"CAP_NET_RAW\"])").unwrap();
        assert_eq!(s.bounding, Some((1 << 12) | (1 << 13)));
        assert_eq!(s.expected_cap_bnd(40), 0x3000);
        let s = sb("capabilities: AllExcept([\"CAP_BPF\"])").unwrap();
        assert_eq!(s.expected_cap_bnd(40), 0x1ff_ffff_ffff & !(1 << 39));
        assert_eq!(sb("capabilities: All").unwrap().expected_cap_bnd(40), 0x1ff_ffff_ffff);
        let e = sb("capabilities: Only([\"CAP_NET_ADMN\"])").unwrap_err().to_string();
        assert!(e.contains("/m/net/init.ron") && e.contains("service d") && e.contains("CAP_NET_ADMN"), "{e}");
        assert!(sb("capabilities: Only([]), ambient: [\"CAP_NET_RAW\"]").is_err(), "ambient outside bounding");
        assert!(sb("capabilities: All, group: Some(\"x\")").is_err());
        assert!(
            sb("capabilities: All, user: Some(\"ntp\"), seccomp: Some(\"x\")").is_err(),
            "seccomp as a user needs nnp"
        );
        assert!(sb("capabilities: All, landlock: Some((read_only: [\"etc\"]))").is_err());
        assert!(sb("capabilities: All, sekcomp: Some(\"x\")").is_err());
    }

    #[test]
    fn unknown_seccomp_profile_is_an_error_naming_file_and_service() {
        let dir = std::env::temp_dir().join(format!("lw-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/seccomp")).unwrap();
        std::fs::write(dir.join("a/seccomp/tight.ron"), "AllowOnly(syscalls: [\"read\"])").unwrap();
        std::fs::write(
            dir.join("a/init.ron"),
            "(services: [(name: \"d\", exec: [\"/bin/d\"], sandbox: (capabilities: All, seccomp: Some(\"tihgt\")))])",
        )
        .unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("a/init.ron") && e.contains("service d") && e.contains("tihgt") && e.contains("tight"),
            "{e}"
        );
        std::fs::write(
            dir.join("a/init.ron"),
            "(services: [(name: \"d\", exec: [\"/bin/d\"], sandbox: (capabilities: All, seccomp: Some(\"tight\")))])",
        )
        .unwrap();
        assert_eq!(load(&dir).unwrap().services[0].sandbox.seccomp.as_deref(), Some("tight"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_shipped_service_has_a_reasoned_sandbox() {
        let cfg = load(&modules_dir()).unwrap();
        let get = |n: &str| cfg.services.iter().find(|s| s.name == n).unwrap().sandbox.clone();
        let dhcpcd = get("dhcpcd");
        assert!(dhcpcd.no_new_privs && dhcpcd.landlock.is_some() && dhcpcd.seccomp.as_deref() == Some("dhcpcd"));
        assert!(dhcpcd.bounding.is_some_and(|b| b & (1 << 21) == 0), "dhcpcd must not keep CAP_SYS_ADMIN");
        let chronyd = get("chronyd");
        assert!(chronyd.no_new_privs && chronyd.landlock.is_some() && chronyd.seccomp.as_deref() == Some("chronyd"));
        assert!(chronyd.bounding.is_some_and(|b| b & (1 << 21) == 0), "chronyd must not keep CAP_SYS_ADMIN");
        let bounding = |caps: &str| {
            let ron = format!("(services: [(name: \"d\", exec: [\"/bin/d\"], sandbox: (capabilities: {caps}))])");
            parse_module(&ron, Path::new("t.ron")).unwrap().services[0].sandbox.bounding
        };
        let administrator = bounding("Administrator");
        let dropped = ADMINISTRATOR_DROPS.map(|c| format!("{c:?}")).join(", ");
        assert_eq!(administrator, bounding(&format!("AllExcept([{dropped}])")));
        assert!(administrator.is_some_and(|b| b & (1 << 21) != 0), "the administrator keeps CAP_SYS_ADMIN");
        for n in ["sshd", "getty-ttyS0", "getty-tty1"] {
            let s = get(n);
            assert_eq!(s.bounding, administrator, "{n}: the administrator's set");
            assert_eq!(s.seccomp.as_deref(), Some("admin"), "{n}");
            // sudo is setuid: no_new_privs would make it useless.
            assert!(!s.no_new_privs, "{n}");
            assert!(s.bounding.is_some_and(|b| b & (1 << 39) == 0), "{n} keeps CAP_BPF");
        }
    }
}
