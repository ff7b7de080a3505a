//! Named seccomp profiles (read by `lightwhale_types::seccomp`: the modules' RON files and
//! the device probe's own `init/seccomp/probe.ron`), compiled to BPF with seccompiler.
//! Compiling makes no syscall; `sandbox` installs the programs.
//!
//! Whatever the profile says, `bpf()` fails: every compiled profile carries a second filter
//! that denies it, so even `lightwhale.seccomp=log` (which turns an allow-list's misses into
//! log lines) does not open it. Lightwhale ships and loads no eBPF of its own.

pub use lightwhale_types::seccomp::{ArgCheck, Mode, Named, Profile, ProfileError};
use seccompiler::{BpfProgram, TargetArch};
use std::collections::BTreeMap;
use std::path::Path;

/// The errno every denied syscall returns.
pub const DENIED_ERRNO: i32 = libc::EPERM;

/// The device probe's allow-list, compiled into the init (it runs before any module file
/// is trusted).
pub const PROBE_PROFILE: &str = include_str!("../../seccomp/probe.ron");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("seccomp profile {name}: {detail} (is every syscall name right for x86_64?)")]
    Compile { name: String, detail: String },
}

/// The compiled filters of one profile, installed in this order: the bpf() filter first
/// (it allows the seccomp syscall that installs the next one; an allow-list may not).
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub programs: Vec<BpfProgram>,
}

/// Reads a profile and compiles it: unknown syscall names are errors now, not at the first
/// start of the service.
pub fn parse(name: &str, text: &str, path: &Path) -> Result<Named, SeccompError> {
    let named = lightwhale_types::seccomp::parse(name, text, path)?;
    compile(&named, Mode::Enforce)?;
    Ok(named)
}

/// Every profile in `dir` (a module's `seccomp/` directory), added to `into` by name, each
/// compiled once to check it.
pub fn load_dir(dir: &Path, into: &mut BTreeMap<String, Named>) -> Result<(), SeccompError> {
    let mut found = BTreeMap::new();
    lightwhale_types::seccomp::load_dir(dir, &mut found)?;
    for (name, named) in found {
        compile(&named, Mode::Enforce)?;
        if let Some(first) = into.get(&name) {
            return Err(ProfileError::Duplicate { name, first: first.path.clone(), second: named.path }.into());
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
    use std::path::PathBuf;

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
    fn unknown_syscall_names_are_errors() {
        let e = parse("x", r#"AllowOnly(syscalls: ["read", "reed"])"#, Path::new("x.ron")).unwrap_err();
        assert!(e.to_string().contains("seccomp profile x"), "{e}");
        assert!(matches!(e, SeccompError::Compile { .. }), "{e:?}");
    }
}
