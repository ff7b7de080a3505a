//! Seccomp profiles as `init.ron`'s modules write them (`modules/<module>/seccomp/<name>.ron`):
//! the schema and the rules every profile must follow. Turning a profile into a BPF program
//! is the init's (`lightwhale_init::seccomp`), which also rejects unknown syscall names.
//!
//! Two kinds of profile:
//! - `AllowOnly`: the daemon's allow-list; any other syscall fails with EPERM.
//! - `DenyOnly`: for processes that become the administrator's shell (getty, sshd), where
//!   an allow-list would break arbitrary programs; the listed syscalls fail with EPERM.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid seccomp profile: {source}")]
    Parse { path: PathBuf, source: Box<ron::error::SpannedError> },
    #[error("seccomp profile {name}: {problem}")]
    Invalid { name: String, problem: String },
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

/// Reads a profile and checks its rules (bpf() is never allowed, argument checks are
/// well formed, a deny-list denies something); syscall names are checked when compiled.
pub fn parse(name: &str, text: &str, path: &Path) -> Result<Named, ProfileError> {
    let profile: Profile =
        ron::from_str(text).map_err(|source| ProfileError::Parse { path: path.into(), source: Box::new(source) })?;
    let invalid = |problem: String| ProfileError::Invalid { name: name.into(), problem };
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
    Ok(Named { name: name.into(), path: path.into(), profile })
}

/// Every `*.ron` in `dir` (a module's `seccomp/` directory), added to `into` by file stem.
pub fn load_dir(dir: &Path, into: &mut BTreeMap<String, Named>) -> Result<(), ProfileError> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(()) };
    let mut files: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "ron")).collect();
    files.sort();
    for path in files {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text =
            std::fs::read_to_string(&path).map_err(|source| ProfileError::Read { path: path.clone(), source })?;
        let named = parse(&name, &text, &path)?;
        if let Some(first) = into.get(&name) {
            return Err(ProfileError::Duplicate { name, first: first.path.clone(), second: path });
        }
        into.insert(name, named);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_cannot_be_allowed() {
        let p = Path::new("x.ron");
        let e = parse("x", r#"AllowOnly(syscalls: ["read", "bpf"])"#, p).unwrap_err();
        assert!(e.to_string().contains("bpf"), "{e}");
        let e = parse("x", r#"AllowOnly(syscalls: [], arg_checks: [(syscall: "bpf", arg: 0, one_of: [0])])"#, p);
        assert!(e.is_err());
    }

    #[test]
    fn bad_checks_and_empty_deny_lists_are_errors() {
        let p = Path::new("x.ron");
        let both = r#"AllowOnly(syscalls: ["socket"], arg_checks: [(syscall: "socket", arg: 0, one_of: [1])])"#;
        assert!(parse("x", both, p).unwrap_err().to_string().contains("keep one"));
        assert!(parse("x", r#"AllowOnly(syscalls: [], arg_checks: [(syscall: "socket", arg: 6, one_of: [1])])"#, p)
            .is_err());
        assert!(parse("x", r#"DenyOnly(syscalls: [])"#, p).is_err());
        assert!(parse("x", r#"AllowSome(syscalls: [])"#, p).is_err());
        assert!(parse("x", r#"DenyOnly(syscalls: ["kexec_load"])"#, p).is_ok());
    }
}
