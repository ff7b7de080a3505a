//! Named seccomp profiles: RON files kept in the repository (`modules/<module>/seccomp/
//! <name>.ron`, and the device probe's own `init/seccomp/probe.ron`), compiled to BPF with
//! seccompiler. Pure apart from nothing: turning a profile into a program makes no syscall;
//! `sandbox` installs it.
//!
//! Two kinds of profile:
//! - `AllowOnly`: the daemon's allow-list; any other syscall fails with EPERM.
//! - `DenyOnly`: for processes that become the administrator's shell (getty, sshd), where
//!   an allow-list would break arbitrary programs; the listed syscalls fail with EPERM.
//!
//! Whatever the profile says, `bpf()` fails: every compiled profile carries a second filter
//! that denies it, so even `lightwhale.seccomp=log` (which turns an allow-list's misses into
//! log lines) does not open it. Lightwhale ships and loads no eBPF of its own.

use seccompiler::{BpfProgram, TargetArch};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The errno every denied syscall returns.
pub const DENIED_ERRNO: i32 = libc::EPERM;

/// The device probe's allow-list, compiled into the init (it runs before any module file
/// is trusted).
pub const PROBE_PROFILE: &str = include_str!("../seccomp/probe.ron");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid seccomp profile: {source}")]
    Parse { path: PathBuf, source: Box<ron::error::SpannedError> },
    #[error("seccomp profile {name}: {problem}")]
    Invalid { name: String, problem: String },
    #[error("seccomp profile {name}: {detail} (is every syscall name right for x86_64?)")]
    Compile { name: String, detail: String },
    #[error("seccomp profile {name} is defined twice: {first} and {second}")]
    Duplicate { name: String, first: PathBuf, second: PathBuf },
}

/// One argument check: the syscall is allowed only when argument `arg` (0-5) is one of
/// `one_of` (compared as a 32-bit value, e.g. a socket's address family).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArgCheck {
    pub syscall: String,
    pub arg: u8,
    pub one_of: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub enum Profile {
    AllowOnly {
        syscalls: Vec<String>,
        #[serde(default)]
        arg_checks: Vec<ArgCheck>,
    },
    DenyOnly {
        syscalls: Vec<String>,
    },
}

/// What an allow-list does with a syscall it does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Fail it with EPERM.
    #[default]
    Enforce,
    /// Allow it and log it (kernel `audit: type=1326` lines in dmesg): for finding what a
    /// daemon's allow-list misses, with `lightwhale.seccomp=log` at the boot prompt.
    Log,
}

/// A parsed profile with its name (the file stem) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub path: PathBuf,
    pub profile: Profile,
}

/// The compiled filters of one profile, installed in this order: the bpf() filter first
/// (it allows the seccomp syscall that installs the next one; an allow-list may not).
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub programs: Vec<BpfProgram>,
}

pub fn parse(name: &str, text: &str, path: &Path) -> Result<Named, SeccompError> {
    let profile: Profile =
        ron::from_str(text).map_err(|source| SeccompError::Parse { path: path.into(), source: Box::new(source) })?;
    let invalid = |problem: String| SeccompError::Invalid { name: name.into(), problem };
    match &profile {
        Profile::AllowOnly { syscalls, arg_checks } => {
            if syscalls.iter().chain(arg_checks.iter().map(|c| &c.syscall)).any(|s| s == "bpf") {
                return Err(invalid("allows bpf(), which every profile must deny".into()));
            }
            for c in arg_checks {
                if syscalls.contains(&c.syscall) {
                    return Err(invalid(format!(
                        "{} is both allowed outright and only with an argument check; keep one",
                        c.syscall
                    )));
                }
                if c.arg > 5 || c.one_of.is_empty() {
                    return Err(invalid(format!("{}: arg must be 0-5 and one_of must not be empty", c.syscall)));
                }
            }
        }
        Profile::DenyOnly { syscalls } if syscalls.is_empty() => {
            return Err(invalid("denies nothing; a profile that changes nothing is a mistake".into()))
        }
        Profile::DenyOnly { .. } => {}
    }
    let named = Named { name: name.into(), path: path.into(), profile };
    // Unknown syscall names are errors now, not at the first start of the service.
    compile(&named, Mode::Enforce)?;
    Ok(named)
}

/// Every `*.ron` in `dir` (a module's `seccomp/` directory), added to `into` by file stem.
pub fn load_dir(dir: &Path, into: &mut BTreeMap<String, Named>) -> Result<(), SeccompError> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut files: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "ron")).collect();
    files.sort();
    for path in files {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text =
            std::fs::read_to_string(&path).map_err(|source| SeccompError::Read { path: path.clone(), source })?;
        let named = parse(&name, &text, &path)?;
        if let Some(first) = into.get(&name) {
            return Err(SeccompError::Duplicate { name, first: first.path.clone(), second: path });
        }
        into.insert(name, named);
    }
    Ok(())
}

/// The probe's profile, parsed from the copy built into the init.
pub fn probe_profile() -> Result<Named, SeccompError> {
    parse("probe", PROBE_PROFILE, Path::new("init/seccomp/probe.ron"))
}

fn rule(syscall: &str) -> serde_json::Value {
    serde_json::json!({ "syscall": syscall })
}

/// Compiles a profile (and the filter that denies bpf()) for x86_64.
pub fn compile(p: &Named, mode: Mode) -> Result<Compiled, SeccompError> {
    let errno = serde_json::json!({ "errno": DENIED_ERRNO });
    let filter = match &p.profile {
        Profile::AllowOnly { syscalls, arg_checks } => {
            let mut rules: Vec<serde_json::Value> = syscalls.iter().map(|s| rule(s)).collect();
            for c in arg_checks {
                for v in &c.one_of {
                    rules.push(serde_json::json!({
                        "syscall": c.syscall,
                        "args": [{ "index": c.arg, "type": "dword", "op": "eq", "val": v }],
                    }));
                }
            }
            let mismatch = match mode {
                Mode::Enforce => errno.clone(),
                Mode::Log => serde_json::json!("log"),
            };
            serde_json::json!({ "mismatch_action": mismatch, "match_action": "allow", "filter": rules })
        }
        Profile::DenyOnly { syscalls } => serde_json::json!({
            "mismatch_action": "allow",
            "match_action": errno,
            "filter": syscalls.iter().map(|s| rule(s)).collect::<Vec<_>>(),
        }),
    };
    let no_bpf = serde_json::json!({ "mismatch_action": "allow", "match_action": errno, "filter": [rule("bpf")] });
    let json = serde_json::json!({ "profile": filter, "no_bpf": no_bpf }).to_string();
    let mut map = seccompiler::compile_from_json(json.as_bytes(), TargetArch::x86_64)
        .map_err(|e| SeccompError::Compile { name: p.name.clone(), detail: e.to_string() })?;
    let mut take = |k: &str| {
        map.remove(k).ok_or_else(|| SeccompError::Compile { name: p.name.clone(), detail: format!("no {k} filter") })
    };
    Ok(Compiled { programs: vec![take("no_bpf")?, take("profile")?] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules")
    }

    #[test]
    fn probe_profile_parses_and_compiles() {
        let p = probe_profile().unwrap();
        assert!(matches!(p.profile, Profile::AllowOnly { .. }));
        let c = compile(&p, Mode::Enforce).unwrap();
        assert_eq!(c.programs.len(), 2);
        assert!(c.programs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn shipped_profiles_compile() {
        let mut all = BTreeMap::new();
        for m in std::fs::read_dir(modules_dir()).unwrap().flatten() {
            load_dir(&m.path().join("seccomp"), &mut all).unwrap();
        }
        assert!(all.contains_key("dhcpcd") && all.contains_key("admin"), "{:?}", all.keys());
        for p in all.values() {
            compile(p, Mode::Log).unwrap();
        }
    }

    #[test]
    fn bpf_cannot_be_allowed() {
        let p = Path::new("x.ron");
        let e = parse("x", r#"AllowOnly(syscalls: ["read", "bpf"])"#, p).unwrap_err();
        assert!(e.to_string().contains("bpf"), "{e}");
        let e = parse("x", r#"AllowOnly(syscalls: [], arg_checks: [(syscall: "bpf", arg: 0, one_of: [0])])"#, p);
        assert!(e.is_err());
    }

    #[test]
    fn unknown_syscall_and_bad_checks_are_errors() {
        let p = Path::new("x.ron");
        let e = parse("x", r#"AllowOnly(syscalls: ["read", "reed"])"#, p).unwrap_err();
        assert!(e.to_string().contains("seccomp profile x"), "{e}");
        assert!(parse(
            "x",
            r#"AllowOnly(syscalls: ["socket"], arg_checks: [(syscall: "socket", arg: 0, one_of: [1])])"#,
            p
        )
        .is_err());
        assert!(parse("x", r#"AllowOnly(syscalls: [], arg_checks: [(syscall: "socket", arg: 6, one_of: [1])])"#, p)
            .is_err());
        assert!(parse("x", r#"DenyOnly(syscalls: [])"#, p).is_err());
        assert!(parse("x", r#"AllowSome(syscalls: [])"#, p).is_err());
        assert!(parse("x", r#"DenyOnly(syscalls: ["kexec_load"])"#, p).is_ok());
    }
}
