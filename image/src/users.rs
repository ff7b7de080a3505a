//! The image's accounts: /etc/passwd, group, shadow, gshadow, subuid and subgid, and the
//! users' home directories, from the modules' `[[users]]`, `[[system_users]]` and
//! `[[groups]]`. Both build paths run this: on Debian the packages have created the system
//! accounts already and only the users are added (exactly as `useradd` and `usermod` did);
//! on Nix there are no files yet and everything starts from Debian's base accounts.
//!
//! The editing is pure (`Accounts` over the files' text); `apply` is the thin file layer.

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Group, SystemUser, User};
use std::path::Path;

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("users.rs");

const STEP: &str = "users";

/// Debian's login.defs: UID_MIN/GID_MIN, SYS_UID_MAX, and the shadow ageing defaults.
const UID_MIN: u32 = 1000;
const SYS_ID_MAX: u32 = 999;
const SUB_ID_START: u64 = 100_000;
const SUB_ID_COUNT: u64 = 65_536;
const NOGROUP: u32 = 65_534;
/// The gid of Debian's `shadow` group, which may read /etc/shadow.
pub const SHADOW_GID: u32 = 42;

/// Debian's base-passwd accounts that programs on a Docker host rely on (ids as Debian
/// assigns them), for trees that have no account files yet (the Nix path).
const BASE_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const BASE_GROUP: &str = "root:x:0:\ntty:x:5:\ndisk:x:6:\nkmem:x:15:\nsudo:x:27:\nshadow:x:42:\nutmp:x:43:\nusers:x:100:\nnogroup:x:65534:\n";

/// The text of the six account files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub passwd: String,
    pub group: String,
    pub shadow: String,
    pub gshadow: String,
    pub subuid: String,
    pub subgid: String,
}

/// A home directory `apply` must create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
}

fn fields(line: &str) -> Vec<&str> {
    line.split(':').collect()
}

fn entry<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    text.lines().map(fields).find(|f| f.first() == Some(&name))
}

fn ids(text: &str, col: usize) -> Vec<u32> {
    text.lines().filter_map(|l| fields(l).get(col).and_then(|v| v.parse().ok())).collect()
}

fn append_line(text: &mut String, line: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
}

/// Replaces field `col` of the line that starts with `name:`.
fn set_field(text: &str, name: &str, col: usize, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let mut f: Vec<String> = fields(line).into_iter().map(str::to_string).collect();
        if f.first().map(String::as_str) == Some(name) && f.len() > col {
            f[col] = value(&f[col]);
            out.push_str(&f.join(":"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn add_member(list: &str, user: &str) -> String {
    if list.split(',').any(|m| m == user) {
        list.to_string()
    } else if list.is_empty() {
        user.to_string()
    } else {
        format!("{list},{user}")
    }
}

impl Accounts {
    /// Debian's base accounts, for a tree without account files.
    pub fn base(lastchg: u64) -> Accounts {
        let mut a = Accounts { passwd: BASE_PASSWD.into(), group: BASE_GROUP.into(), ..Default::default() };
        for l in BASE_PASSWD.lines() {
            append_line(&mut a.shadow, &format!("{}:*:{lastchg}:0:99999:7:::", fields(l)[0]));
        }
        for l in BASE_GROUP.lines() {
            append_line(&mut a.gshadow, &format!("{}:*::", fields(l)[0]));
        }
        a
    }

    /// The lowest free id in `range`, or the highest one when `descending` (how useradd
    /// picks user ids and `useradd --system` picks system ids).
    fn free_id(taken: &[u32], range: std::ops::RangeInclusive<u32>, descending: bool) -> Option<u32> {
        if descending {
            range.rev().find(|i| !taken.contains(i))
        } else {
            range.into_iter().find(|i| !taken.contains(i))
        }
    }

    /// A system group, unless it exists (Debian's packages made it).
    pub fn ensure_group(&mut self, g: &Group) -> Result<()> {
        if entry(&self.group, &g.name).is_some() {
            return Ok(());
        }
        let gid = match g.gid {
            Some(gid) => gid,
            None => Self::free_id(&ids(&self.group, 2), 100..=SYS_ID_MAX, true)
                .ok_or_else(|| Error::Step { step: STEP, message: "no free system group id left".into() })?,
        };
        if ids(&self.group, 2).contains(&gid) {
            return Err(Error::Step { step: STEP, message: format!("group {}: gid {gid} is taken", g.name) });
        }
        append_line(&mut self.group, &format!("{}:x:{gid}:", g.name));
        append_line(&mut self.gshadow, &format!("{}:!::", g.name));
        Ok(())
    }

    /// A locked system account for a daemon, unless it exists.
    pub fn ensure_system_user(&mut self, u: &SystemUser, lastchg: u64) -> Result<()> {
        if entry(&self.passwd, &u.name).is_some() {
            return Ok(());
        }
        let uid = match u.uid {
            Some(uid) => uid,
            None => Self::free_id(&ids(&self.passwd, 2), 100..=SYS_ID_MAX, true)
                .ok_or_else(|| Error::Step { step: STEP, message: "no free system user id left".into() })?,
        };
        let shell = "/usr/sbin/nologin";
        append_line(&mut self.passwd, &format!("{}:x:{uid}:{NOGROUP}:{}:{}:{shell}", u.name, u.comment, u.home));
        append_line(&mut self.shadow, &format!("{}:!*:{lastchg}::::::", u.name));
        Ok(())
    }

    /// Adds a login user as `useradd --create-home --user-group` does, then its groups
    /// (`usermod --append --groups`) and its password hash (`usermod --password`).
    /// Returns the home directory to create, if the user is new.
    pub fn add_user(&mut self, u: &User, hash: &str, lastchg: u64) -> Result<Option<Home>> {
        for g in &u.groups {
            if entry(&self.group, g).is_none() {
                return Err(Error::Step {
                    step: STEP,
                    message: format!("user {}: group {g} does not exist; declare it in a module's [[groups]]", u.name),
                });
            }
        }
        let mut home = None;
        if entry(&self.passwd, &u.name).is_none() {
            let err =
                || Error::Step { step: STEP, message: format!("user {}: no free id at or above {UID_MIN}", u.name) };
            let uid = Self::free_id(&ids(&self.passwd, 2), UID_MIN..=60_000, false).ok_or_else(err)?;
            let taken = ids(&self.group, 2);
            let gid = if taken.contains(&uid) {
                Self::free_id(&taken, UID_MIN..=60_000, false).ok_or_else(err)?
            } else {
                uid
            };
            let dir = format!("/home/{}", u.name);
            append_line(&mut self.passwd, &format!("{}:x:{uid}:{gid}::{dir}:{}", u.name, u.shell));
            append_line(&mut self.group, &format!("{}:x:{gid}:", u.name));
            append_line(&mut self.shadow, &format!("{}:!:{lastchg}:0:99999:7:::", u.name));
            append_line(&mut self.gshadow, &format!("{}:!::", u.name));
            let start = Self::next_sub_range(&self.subuid).max(Self::next_sub_range(&self.subgid));
            append_line(&mut self.subuid, &format!("{}:{start}:{SUB_ID_COUNT}", u.name));
            append_line(&mut self.subgid, &format!("{}:{start}:{SUB_ID_COUNT}", u.name));
            home = Some(Home { path: dir, uid, gid });
        }
        for g in &u.groups {
            self.group = set_field(&self.group, g, 3, |m| add_member(m, &u.name));
            self.gshadow = set_field(&self.gshadow, g, 3, |m| add_member(m, &u.name));
        }
        self.shadow = set_field(&self.shadow, &u.name, 1, |_| hash.to_string());
        Ok(home)
    }

    /// The first subordinate id after every range already given out.
    fn next_sub_range(text: &str) -> u64 {
        text.lines()
            .filter_map(|l| {
                let f = fields(l);
                Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
            })
            .max()
            .unwrap_or(SUB_ID_START)
            .max(SUB_ID_START)
    }
}

/// SHA-512 crypt (`$6$`, which BusyBox and PAM both accept) with a salt derived from the
/// build date and the user: a fresh random salt would make every build differ, and the
/// default password is public anyway.
pub fn password_hash(epoch: u64, user: &str, password: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(format!("{epoch}:{user}"));
    let salt: String = digest.iter().take(16).map(|b| ALPHABET[(*b as usize) % 64] as char).collect();
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("the default rounds are valid");
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .expect("a 16-character salt from the crypt alphabet is valid");
    format!("$6${salt}${hash}")
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
        acc.ensure_group(g)?;
    }
    for u in system_users {
        acc.ensure_system_user(u, lastchg)?;
    }
    let mut applied = Applied::default();
    let mut homes = Vec::new();
    for u in users {
        if let Some(h) = acc.add_user(u, &password_hash(epoch, &u.name, &u.password), lastchg)? {
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
        let home = a.add_user(&op(), &hash, 20783).unwrap();
        assert_eq!(home, Some(Home { path: "/home/op".into(), uid: 1000, gid: 1000 }));
        assert!(a.passwd.ends_with("op:x:1000:1000::/home/op:/bin/bash\n"), "{}", a.passwd);
        assert!(a.group.contains("\nsudo:x:27:op\n") && a.group.contains("\ndocker:x:102:op\nop:x:1000:\n"));
        assert!(a.gshadow.contains("\nsudo:*::op\n") && a.gshadow.ends_with("docker:!::op\nop:!::\n"));
        assert!(a.shadow.ends_with(&format!("op:{hash}:20783:0:99999:7:::\n")));
        assert_eq!(a.subuid, "op:100000:65536\n");
        assert_eq!(a.subgid, "op:100000:65536\n");
        // A second run changes nothing but the hash (idempotent, no duplicate members).
        let again = a.clone();
        assert_eq!(a.add_user(&op(), &hash, 20783).unwrap(), None);
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
        let e = a.add_user(&u, "h", 1).unwrap_err().to_string();
        assert!(e.contains("docker") && e.contains("[[groups]]"), "{e}");
    }

    #[test]
    fn base_accounts_get_system_groups_and_users_below_1000() {
        let mut a = Accounts::base(7);
        a.ensure_group(&Group { name: "docker".into(), gid: None }).unwrap();
        a.ensure_group(&Group { name: "docker".into(), gid: None }).unwrap();
        a.ensure_system_user(
            &SystemUser { name: "sshd".into(), uid: None, comment: "sshd user".into(), home: "/run/sshd".into() },
            7,
        )
        .unwrap();
        assert!(a.group.ends_with("docker:x:999:\n"), "{}", a.group);
        assert_eq!(a.group.matches("docker:").count(), 1);
        assert!(a.passwd.ends_with("sshd:x:999:65534:sshd user:/run/sshd:/usr/sbin/nologin\n"));
        assert!(a.shadow.ends_with("sshd:!*:7::::::\n"));
        assert!(a.shadow.starts_with("root:*:7:0:99999:7:::\n"));
        let e = a.ensure_group(&Group { name: "other".into(), gid: Some(27) }).unwrap_err();
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
