//! The image's accounts: /etc/passwd, group, shadow, gshadow, subuid and subgid, and the
//! users' home directories, from the modules' `[[users]]`, `[[system_users]]` and
//! `[[groups]]`. Both build paths run this: on Debian the packages have created the system
//! accounts already and only the users are added (exactly as `useradd` and `usermod` did);
//! on Nix there are no files yet and everything starts from Debian's base accounts.
//!
//! The editing is pure (`lightwhale_types::accounts::Accounts` over the files' text, shared
//! with the init's NoCloud provisioning); `apply` is the thin file layer.

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Group, SystemUser, User};
use lightwhale_types::accounts::{self, Accounts, AccountsError, Home};
use std::path::Path;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("users.rs");

const STEP: &str = "users";

/// The gid of Debian's `shadow` group, which may read /etc/shadow.
pub const SHADOW_GID: u32 = 42;

/// The account editing itself (shared with the init's NoCloud provisioning): part of the
/// staleness key of the build step that runs this file.
pub const ACCOUNTS_RECIPE: &str = accounts::RECIPE;

fn step_err(e: AccountsError) -> Error {
    let hint = match e {
        AccountsError::NoGroup { .. } => "; declare it in a module's [[groups]]",
        _ => "",
    };
    Error::Step { step: STEP, message: format!("{e}{hint}") }
}

/// A system group, unless it exists (Debian's packages made it).
pub fn ensure_group(acc: &mut Accounts, g: &Group) -> Result<()> {
    acc.ensure_system_group(&g.name, g.gid).map_err(step_err)
}

/// A locked system account for a daemon, unless it exists.
pub fn ensure_system_user(acc: &mut Accounts, u: &SystemUser, lastchg: u64) -> Result<()> {
    acc.ensure_system_user(&u.name, u.uid, &u.comment, &u.home, lastchg).map_err(step_err)
}

/// Adds a login user as `useradd --create-home --user-group` does, then its groups
/// (`usermod --append --groups`) and its password hash (`usermod --password`).
/// Returns the home directory to create, if the user is new.
pub fn add_user(acc: &mut Accounts, u: &User, hash: &str, lastchg: u64) -> Result<Option<Home>> {
    let home = acc.add_user(&u.name, &u.groups, &u.shell, lastchg).map_err(step_err)?;
    acc.set_password(&u.name, hash).map_err(step_err)?;
    Ok(home)
}

/// SHA-512 crypt (`$6$`, which BusyBox and PAM both accept) with a salt derived from the
/// build date and the user: a fresh random salt would make every build differ, and the
/// default password is public anyway.
pub fn password_hash(epoch: u64, user: &str, password: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = accounts::CRYPT_ALPHABET;
    let digest = Sha256::digest(format!("{epoch}:{user}"));
    let salt: String = digest.iter().take(16).map(|b| ALPHABET[(*b as usize) % 64] as char).collect();
    accounts::sha512_crypt(password, &salt)
}

/// What `apply` did, and the ownership a tree built without root cannot hold itself
/// (as mksquashfs pseudo definitions, see `nixroot`).
#[derive(Debug, Default)]
pub struct Applied {
    pub users_added: Vec<String>,
    pub pseudo: Vec<String>,
}

struct FileSpec {
    rel: &'static str,
    mode: u32,
    gid: u32,
}

const FILES: [FileSpec; 6] = [
    FileSpec { rel: "etc/passwd", mode: 0o644, gid: 0 },
    FileSpec { rel: "etc/group", mode: 0o644, gid: 0 },
    FileSpec { rel: "etc/shadow", mode: 0o640, gid: SHADOW_GID },
    FileSpec { rel: "etc/gshadow", mode: 0o640, gid: SHADOW_GID },
    FileSpec { rel: "etc/subuid", mode: 0o644, gid: 0 },
    FileSpec { rel: "etc/subgid", mode: 0o644, gid: 0 },
];

/// Reads the account files of the tree at `root` (Debian's base accounts when there are
/// none), adds the modules' groups, system users and users, writes the files back and
/// creates the new users' homes from /etc/skel.
pub fn apply(
    root: &Path,
    groups: &[Group],
    system_users: &[SystemUser],
    users: &[User],
    epoch: u64,
) -> Result<Applied> {
    let lastchg = epoch / 86_400;
    let read = |rel: &str| -> Result<Option<String>> {
        let p = root.join(rel);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(STEP, p),
        }
    };
    let mut acc = match read("etc/passwd")? {
        Some(passwd) => Accounts {
            passwd,
            group: read("etc/group")?.unwrap_or_default(),
            shadow: read("etc/shadow")?.unwrap_or_default(),
            gshadow: read("etc/gshadow")?.unwrap_or_default(),
            subuid: read("etc/subuid")?.unwrap_or_default(),
            subgid: read("etc/subgid")?.unwrap_or_default(),
        },
        None => Accounts::base(lastchg),
    };
    let before = acc.clone();
    for g in groups {
        ensure_group(&mut acc, g)?;
    }
    for u in system_users {
        ensure_system_user(&mut acc, u, lastchg)?;
    }
    let mut applied = Applied::default();
    let mut homes = Vec::new();
    for u in users {
        if let Some(h) = add_user(&mut acc, u, &password_hash(epoch, &u.name, &u.password), lastchg)? {
            applied.users_added.push(u.name.clone());
            homes.push(h);
        }
    }
    let texts = [
        (&before.passwd, &acc.passwd),
        (&before.group, &acc.group),
        (&before.shadow, &acc.shadow),
        (&before.gshadow, &acc.gshadow),
        (&before.subuid, &acc.subuid),
        (&before.subgid, &acc.subgid),
    ];
    let as_root = crate::is_root();
    for (spec, (old, new)) in FILES.iter().zip(texts) {
        let p = root.join(spec.rel);
        let existed = p.exists();
        if old != new || !existed {
            std::fs::create_dir_all(p.parent().unwrap_or(root)).ctx(STEP, &p)?;
            std::fs::write(&p, new).ctx(STEP, &p)?;
        }
        if !existed {
            set_mode(&p, spec.mode)?;
            if as_root {
                std::os::unix::fs::chown(&p, Some(0), Some(spec.gid)).ctx(STEP, &p)?;
            }
        }
        applied.pseudo.push(format!("{} m {:o} 0 {}", spec.rel, spec.mode, spec.gid));
    }
    for h in homes {
        make_home(root, &h, as_root, &mut applied.pseudo)?;
    }
    Ok(applied)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).ctx(STEP, p)
}

/// `useradd --create-home`: mode 0700 (Debian's HOME_MODE), the files of /etc/skel.
fn make_home(root: &Path, h: &Home, as_root: bool, pseudo: &mut Vec<String>) -> Result<()> {
    let rel = h.path.trim_start_matches('/');
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).ctx(STEP, &dir)?;
    set_mode(&dir, 0o700)?;
    let mut owned = vec![(dir.clone(), rel.to_string(), 0o700)];
    let skel = root.join("etc/skel");
    if skel.is_dir() {
        for p in crate::tree::walk(&skel).ctx(STEP, &skel)? {
            let name = p.strip_prefix(&skel).unwrap_or(&p);
            let target = dir.join(name);
            let meta = std::fs::symlink_metadata(&p).ctx(STEP, &p)?;
            if meta.is_dir() {
                std::fs::create_dir_all(&target).ctx(STEP, &target)?;
            } else if meta.is_file() {
                std::fs::copy(&p, &target).ctx(STEP, &target)?;
            } else {
                continue;
            }
            use std::os::unix::fs::PermissionsExt;
            owned.push((target, format!("{rel}/{}", name.display()), meta.permissions().mode() & 0o7777));
        }
    }
    for (path, rel, mode) in owned {
        if as_root {
            std::os::unix::fs::lchown(&path, Some(h.uid), Some(h.gid)).ctx(STEP, &path)?;
        }
        pseudo.push(format!("{rel} m {mode:o} {} {}", h.uid, h.gid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> User {
        User {
            name: "op".into(),
            password: "opsecret".into(),
            groups: vec!["sudo".into(), "docker".into()],
            shell: "/bin/bash".into(),
        }
    }

    /// What Debian's useradd/usermod made of the same request (read off a trixie tree).
    #[test]
    fn adds_op_exactly_as_useradd_and_usermod_did() {
        let mut a = Accounts {
            passwd: "root:x:0:0:root:/root:/bin/bash\nsshd:x:999:65534:sshd user:/run/sshd:/usr/sbin/nologin\n".into(),
            group: "root:x:0:\nsudo:x:27:\nusers:x:100:\n_ssh:x:101:\ndocker:x:102:\n".into(),
            shadow: "root:*:20783:0:99999:7:::\nsshd:!*:20783::::::\n".into(),
            gshadow: "root:*::\nsudo:*::\nusers:*::\n_ssh:!::\ndocker:!::\n".into(),
            subuid: String::new(),
            subgid: String::new(),
        };
        let hash = password_hash(1_795_700_000, "op", "opsecret");
        let home = add_user(&mut a, &op(), &hash, 20783).unwrap();
        assert_eq!(home, Some(Home { path: "/home/op".into(), uid: 1000, gid: 1000 }));
        assert!(a.passwd.ends_with("op:x:1000:1000::/home/op:/bin/bash\n"), "{}", a.passwd);
        assert!(a.group.contains("\nsudo:x:27:op\n") && a.group.contains("\ndocker:x:102:op\nop:x:1000:\n"));
        assert!(a.gshadow.contains("\nsudo:*::op\n") && a.gshadow.ends_with("docker:!::op\nop:!::\n"));
        assert!(a.shadow.ends_with(&format!("op:{hash}:20783:0:99999:7:::\n")));
        assert_eq!(a.subuid, "op:100000:65536\n");
        assert_eq!(a.subgid, "op:100000:65536\n");
        // A second run changes nothing but the hash (idempotent, no duplicate members).
        let again = a.clone();
        assert_eq!(add_user(&mut a, &op(), &hash, 20783).unwrap(), None);
        assert_eq!(a, again);
    }

    #[test]
    fn hash_matches_openssl_passwd_6() {
        // `openssl passwd -6 -salt sN6YMVX814V/ZX8O opsecret`
        let expected = "$6$sN6YMVX814V/ZX8O$6S1hdsYtYn5yer/ANCbkmvBO3sT05nLlOEytdnAHFCEyuGzY.d4EHrZW30HsLIQ64uaZoUPBzftKOMS2pA/GQ1";
        let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).unwrap();
        let h = sha_crypt::sha512_crypt_b64(b"opsecret", b"sN6YMVX814V/ZX8O", &params).unwrap();
        assert_eq!(format!("$6$sN6YMVX814V/ZX8O${h}"), expected);
        // Same build date, same hash; another date, another salt.
        assert_eq!(password_hash(1, "op", "x"), password_hash(1, "op", "x"));
        assert_ne!(password_hash(1, "op", "x"), password_hash(2, "op", "x"));
    }

    #[test]
    fn a_missing_group_is_an_error_that_names_the_fix() {
        let mut a = Accounts::base(1);
        let mut u = op();
        u.groups = vec!["docker".into()];
        let e = add_user(&mut a, &u, "h", 1).unwrap_err().to_string();
        assert!(e.contains("docker") && e.contains("[[groups]]"), "{e}");
    }

    #[test]
    fn base_accounts_get_system_groups_and_users_below_1000() {
        let mut a = Accounts::base(7);
        ensure_group(&mut a, &Group { name: "docker".into(), gid: None }).unwrap();
        ensure_group(&mut a, &Group { name: "docker".into(), gid: None }).unwrap();
        ensure_system_user(
            &mut a,
            &SystemUser { name: "sshd".into(), uid: None, comment: "sshd user".into(), home: "/run/sshd".into() },
            7,
        )
        .unwrap();
        assert!(a.group.ends_with("docker:x:999:\n"), "{}", a.group);
        assert_eq!(a.group.matches("docker:").count(), 1);
        assert!(a.passwd.ends_with("sshd:x:999:65534:sshd user:/run/sshd:/usr/sbin/nologin\n"));
        assert!(a.shadow.ends_with("sshd:!*:7::::::\n"));
        assert!(a.shadow.starts_with("root:*:7:0:99999:7:::\n"));
        let e = ensure_group(&mut a, &Group { name: "other".into(), gid: Some(27) }).unwrap_err();
        assert!(e.to_string().contains("taken"));
    }

    #[test]
    fn apply_on_an_empty_tree_writes_files_home_and_pseudo_definitions() {
        let root = std::env::temp_dir().join(format!("lw-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/skel")).unwrap();
        std::fs::write(root.join("etc/skel/.profile"), "PATH=/usr/bin\n").unwrap();
        let groups = [Group { name: "docker".into(), gid: None }];
        let applied = apply(&root, &groups, &[], &[op()], 86_400 * 3).unwrap();
        assert_eq!(applied.users_added, vec!["op".to_string()]);
        let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
        assert!(shadow.contains("op:$6$"), "{shadow}");
        assert_eq!(std::fs::read_to_string(root.join("home/op/.profile")).unwrap(), "PATH=/usr/bin\n");
        assert!(applied.pseudo.contains(&"etc/shadow m 640 0 42".to_string()), "{:?}", applied.pseudo);
        assert!(applied.pseudo.contains(&"home/op m 700 1000 1000".to_string()));
        assert!(applied.pseudo.contains(&"home/op/.profile m 644 1000 1000".to_string()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
