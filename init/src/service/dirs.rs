//! The directories a service needs before it starts (its runtime directory in /run, its
//! state in the volatile /var), made by the init itself with plain syscalls instead of
//! `mkdir`/`chown`/`chmod` processes, which are slow on the way to Docker being ready:
//! under emulation, with containerd starting beside it, dhcpcd started 0.76 s after
//! containerd behind its `mkdir`, and 0.24-0.34 s after it without. They are made before
//! the service's sandbox, so its Landlock rules can name them.

use crate::config::Directory;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Makes each of `dirs` (with missing parents), then gives it its owner and mode where the
/// configuration names them (a directory two services share is set up by its owner's),
/// the owner's uid and primary group looked up in the texts of /etc/passwd and /etc/group.
pub fn make(dirs: &[Directory], passwd: &str, group: &str) -> Result<(), DirError> {
    for d in dirs {
        let path = Path::new(&d.path);
        let at = |source| DirError::Io { doing: "making", path: d.path.clone(), source };
        std::fs::create_dir_all(path).map_err(at)?;
        if let Some(owner) = &d.owner {
            let c = crate::sandbox::credentials(passwd, group, owner, None)?;
            std::os::unix::fs::chown(path, Some(c.uid), Some(c.gid)).map_err(|source| DirError::Chown {
                path: d.path.clone(),
                owner: owner.clone(),
                source,
            })?;
        }
        if let Some(mode) = d.mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| DirError::Io {
                doing: "setting the mode of",
                path: d.path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Why a service's directories could not be made; the service is not started.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{doing} {path}: {source}")]
    Io { doing: &'static str, path: String, source: std::io::Error },
    #[error("giving {path} to {owner}: {source}")]
    Chown { path: String, owner: String, source: std::io::Error },
    #[error(transparent)]
    Owner(#[from] crate::sandbox::CredentialsError),
    #[error(transparent)]
    Accounts(#[from] super::spawn::SandboxError),
}

/// `make` with the running system's accounts (read only when an owner is named).
pub fn make_for_service(dirs: &[Directory]) -> Result<(), DirError> {
    let read = super::spawn::read_accounts_file;
    let (passwd, group) = if dirs.iter().any(|d| d.owner.is_some()) {
        (read("/etc/passwd")?, read("/etc/group")?)
    } else {
        (String::new(), String::new())
    };
    make(dirs, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn made_with_parents_owner_and_mode() {
        let base = std::env::temp_dir().join(format!("lw-service-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // The test's own uid and gid under a made-up name: chown to oneself needs no root.
        let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let passwd = format!("svc:x:{uid}:{gid}::/:/bin/false\n");
        let group = format!("svc:x:{gid}:\n");
        let run = base.join("run/svc");
        let state = base.join("var/lib/svc");
        let dirs = [
            Directory { path: run.display().to_string(), owner: Some("svc".into()), mode: Some(0o750) },
            Directory { path: state.display().to_string(), owner: None, mode: None },
        ];
        make(&dirs, &passwd, &group).unwrap();
        let m = std::fs::metadata(&run).unwrap();
        assert!(m.is_dir());
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o750));
        assert!(std::fs::metadata(&state).unwrap().is_dir());
        // Again, as at a restart: the directories exist already. Another service naming
        // the same directory without a mode leaves its owner's mode alone.
        make(&dirs, &passwd, &group).unwrap();
        make(&[Directory { path: run.display().to_string(), owner: None, mode: None }], "", "").unwrap();
        assert_eq!(std::fs::metadata(&run).unwrap().mode() & 0o7777, 0o750);

        let unknown = [Directory { path: run.display().to_string(), owner: Some("nobody-here".into()), mode: None }];
        let err = make(&unknown, &passwd, &group).unwrap_err();
        assert!(
            matches!(&err, DirError::Owner(crate::sandbox::CredentialsError::NoUser(u)) if u == "nobody-here"),
            "{err}"
        );
        assert_eq!(err.to_string(), "user \"nobody-here\" is not in /etc/passwd");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
