//! Editing the account files (/etc/passwd, group, shadow, gshadow, subuid, subgid) as text,
//! the way Debian's useradd, groupadd and usermod do. Pure: the callers read and write the
//! files. Two users: the image builder (`lightwhale_image::users`, the image's accounts at
//! build time) and the NoCloud provisioning at boot (`crate::nocloud`, accounts from a seed).

/// This file's own text: part of the staleness key of the image build step that runs it.
pub const RECIPE: &str = include_str!("accounts.rs");

/// Debian's login.defs: UID_MIN/GID_MIN, UID_MAX/GID_MAX, SYS_UID_MAX, subordinate ids.
const ID_MIN: u32 = 1000;
const ID_MAX: u32 = 60_000;
const SYS_ID_MAX: u32 = 999;
const SUB_ID_START: u64 = 100_000;
const SUB_ID_COUNT: u64 = 65_536;
const NOGROUP: u32 = 65_534;

/// Debian's base-passwd accounts that programs on a Docker host rely on (ids as Debian
/// assigns them), for trees that have no account files yet (the Nix path).
const BASE_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const BASE_GROUP: &str = "root:x:0:\ntty:x:5:\ndisk:x:6:\nkmem:x:15:\nsudo:x:27:\nshadow:x:42:\nutmp:x:43:\nusers:x:100:\nnogroup:x:65534:\n";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    #[error("user {user}: group {group} does not exist")]
    NoGroup { user: String, group: String },
    #[error("user {user}: no free id between {ID_MIN} and {ID_MAX}")]
    NoUserId { user: String },
    #[error("group {group}: no free {kind} group id left")]
    NoGroupId { group: String, kind: &'static str },
    #[error("no free system user id left for {user}")]
    NoSystemUserId { user: String },
    #[error("group {group}: gid {gid} is taken")]
    GidTaken { group: String, gid: u32 },
    #[error("user {user} does not exist")]
    NoUser { user: String },
}

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

/// A home directory the caller must create for a new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
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

/// The lowest free id in `range`, or the highest one when `descending` (how useradd
/// picks user ids and `useradd --system` picks system ids).
fn free_id(taken: &[u32], range: std::ops::RangeInclusive<u32>, descending: bool) -> Option<u32> {
    if descending {
        range.rev().find(|i| !taken.contains(i))
    } else {
        range.into_iter().find(|i| !taken.contains(i))
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

    pub fn user(&self, name: &str) -> Option<UserEntry> {
        let f = entry(&self.passwd, name)?;
        Some(UserEntry {
            name: name.to_string(),
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            gecos: f.get(4)?.to_string(),
            home: f.get(5)?.to_string(),
            shell: f.get(6).map(|s| s.to_string()).unwrap_or_default(),
        })
    }

    pub fn group_id(&self, name: &str) -> Option<u32> {
        entry(&self.group, name)?.get(2)?.parse().ok()
    }

    /// The password field of /etc/shadow.
    pub fn password_field(&self, name: &str) -> Option<String> {
        entry(&self.shadow, name)?.get(1).map(|s| s.to_string())
    }

    /// A system group (`groupadd --system`), unless it exists (Debian's packages made it).
    pub fn ensure_system_group(&mut self, name: &str, gid: Option<u32>) -> Result<(), AccountsError> {
        if entry(&self.group, name).is_some() {
            return Ok(());
        }
        let gid = match gid {
            Some(gid) => gid,
            None => free_id(&ids(&self.group, 2), 100..=SYS_ID_MAX, true)
                .ok_or_else(|| AccountsError::NoGroupId { group: name.into(), kind: "system" })?,
        };
        if ids(&self.group, 2).contains(&gid) {
            return Err(AccountsError::GidTaken { group: name.into(), gid });
        }
        append_line(&mut self.group, &format!("{name}:x:{gid}:"));
        append_line(&mut self.gshadow, &format!("{name}:!::"));
        Ok(())
    }

    /// A regular group (`groupadd`), unless it exists; returns its gid.
    pub fn ensure_group(&mut self, name: &str) -> Result<u32, AccountsError> {
        if let Some(gid) = self.group_id(name) {
            return Ok(gid);
        }
        let gid = free_id(&ids(&self.group, 2), ID_MIN..=ID_MAX, false)
            .ok_or_else(|| AccountsError::NoGroupId { group: name.into(), kind: "regular" })?;
        append_line(&mut self.group, &format!("{name}:x:{gid}:"));
        append_line(&mut self.gshadow, &format!("{name}:!::"));
        Ok(gid)
    }

    /// A locked system account for a daemon, unless it exists.
    pub fn ensure_system_user(
        &mut self,
        name: &str,
        uid: Option<u32>,
        comment: &str,
        home: &str,
        lastchg: u64,
    ) -> Result<(), AccountsError> {
        if entry(&self.passwd, name).is_some() {
            return Ok(());
        }
        let uid = match uid {
            Some(uid) => uid,
            None => free_id(&ids(&self.passwd, 2), 100..=SYS_ID_MAX, true)
                .ok_or_else(|| AccountsError::NoSystemUserId { user: name.into() })?,
        };
        let shell = "/usr/sbin/nologin";
        append_line(&mut self.passwd, &format!("{name}:x:{uid}:{NOGROUP}:{comment}:{home}:{shell}"));
        append_line(&mut self.shadow, &format!("{name}:!*:{lastchg}::::::"));
        Ok(())
    }

    /// Adds a login user as `useradd --create-home --user-group` does (password locked),
    /// then its groups (`usermod --append --groups`). Returns the home directory to create,
    /// if the user is new; an existing user only gains the groups.
    pub fn add_user(
        &mut self,
        name: &str,
        groups: &[String],
        shell: &str,
        lastchg: u64,
    ) -> Result<Option<Home>, AccountsError> {
        for g in groups {
            if entry(&self.group, g).is_none() {
                return Err(AccountsError::NoGroup { user: name.into(), group: g.clone() });
            }
        }
        let mut home = None;
        if entry(&self.passwd, name).is_none() {
            let err = || AccountsError::NoUserId { user: name.into() };
            let uid = free_id(&ids(&self.passwd, 2), ID_MIN..=ID_MAX, false).ok_or_else(err)?;
            let taken = ids(&self.group, 2);
            let gid = if taken.contains(&uid) { free_id(&taken, ID_MIN..=ID_MAX, false).ok_or_else(err)? } else { uid };
            let dir = format!("/home/{name}");
            append_line(&mut self.passwd, &format!("{name}:x:{uid}:{gid}::{dir}:{shell}"));
            append_line(&mut self.group, &format!("{name}:x:{gid}:"));
            append_line(&mut self.shadow, &format!("{name}:!:{lastchg}:0:99999:7:::"));
            append_line(&mut self.gshadow, &format!("{name}:!::"));
            let start = next_sub_range(&self.subuid).max(next_sub_range(&self.subgid));
            append_line(&mut self.subuid, &format!("{name}:{start}:{SUB_ID_COUNT}"));
            append_line(&mut self.subgid, &format!("{name}:{start}:{SUB_ID_COUNT}"));
            home = Some(Home { path: dir, uid, gid });
        }
        for g in groups {
            self.group = set_field(&self.group, g, 3, |m| add_member(m, name));
            self.gshadow = set_field(&self.gshadow, g, 3, |m| add_member(m, name));
        }
        Ok(home)
    }

    /// `usermod --append --groups GROUP USER` for an existing user and group.
    pub fn add_to_group(&mut self, user: &str, group: &str) -> Result<(), AccountsError> {
        self.require(user)?;
        if entry(&self.group, group).is_none() {
            return Err(AccountsError::NoGroup { user: user.into(), group: group.into() });
        }
        self.group = set_field(&self.group, group, 3, |m| add_member(m, user));
        self.gshadow = set_field(&self.gshadow, group, 3, |m| add_member(m, user));
        Ok(())
    }

    fn require(&self, name: &str) -> Result<(), AccountsError> {
        match entry(&self.passwd, name) {
            Some(_) => Ok(()),
            None => Err(AccountsError::NoUser { user: name.into() }),
        }
    }

    /// `usermod --password HASH`: the shadow password field as given (a crypt hash, or
    /// `!...` for a locked one).
    pub fn set_password(&mut self, name: &str, hash: &str) -> Result<(), AccountsError> {
        self.require(name)?;
        self.shadow = set_field(&self.shadow, name, 1, |_| hash.to_string());
        Ok(())
    }

    /// `passwd --lock`: a `!` before the hash, so no password matches; keys still work.
    pub fn lock_password(&mut self, name: &str) -> Result<(), AccountsError> {
        self.require(name)?;
        self.shadow =
            set_field(&self.shadow, name, 1, |h| if h.starts_with('!') { h.to_string() } else { format!("!{h}") });
        Ok(())
    }

    /// `usermod --shell`.
    pub fn set_shell(&mut self, name: &str, shell: &str) -> Result<(), AccountsError> {
        self.require(name)?;
        self.passwd = set_field(&self.passwd, name, 6, |_| shell.to_string());
        Ok(())
    }

    /// `usermod --comment`.
    pub fn set_gecos(&mut self, name: &str, gecos: &str) -> Result<(), AccountsError> {
        self.require(name)?;
        self.passwd = set_field(&self.passwd, name, 4, |_| gecos.to_string());
        Ok(())
    }
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

/// The characters of crypt's salt and hash alphabet.
pub const CRYPT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-512 crypt (`$6$`, which BusyBox, PAM and sshd all accept) with the default 5000
/// rounds. `salt` must come from CRYPT_ALPHABET (at most 16 characters are used).
pub fn sha512_crypt(password: &str, salt: &str) -> String {
    let salt: String = salt.chars().take(16).collect();
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("the default rounds are valid");
    match sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params) {
        Ok(hash) => format!("$6${salt}${hash}"),
        // Only an invalid salt fails; a locked field is the safe answer.
        Err(_) => "!".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> Accounts {
        Accounts {
            passwd: "root:x:0:0:root:/root:/bin/bash\nsshd:x:999:65534:sshd user:/run/sshd:/usr/sbin/nologin\nop:x:1000:1000::/home/op:/bin/bash\n".into(),
            group: "root:x:0:\nsudo:x:27:op\nusers:x:100:\ndocker:x:102:op\nop:x:1000:\n".into(),
            shadow: "root:*:20783:0:99999:7:::\nsshd:!*:20783::::::\nop:$6$salt$hash:20783:0:99999:7:::\n".into(),
            gshadow: "root:*::\nsudo:*::op\nusers:*::\ndocker:!::op\nop:!::\n".into(),
            subuid: "op:100000:65536\n".into(),
            subgid: "op:100000:65536\n".into(),
        }
    }

    #[test]
    fn a_second_user_gets_the_next_ids_and_subordinate_range() {
        let mut a = debian();
        let home = a.add_user("alice", &["docker".into()], "/bin/sh", 20800).unwrap();
        assert_eq!(home, Some(Home { path: "/home/alice".into(), uid: 1001, gid: 1001 }));
        assert!(a.passwd.ends_with("alice:x:1001:1001::/home/alice:/bin/sh\n"));
        assert!(a.group.contains("\ndocker:x:102:op,alice\n"));
        assert!(a.shadow.ends_with("alice:!:20800:0:99999:7:::\n"));
        assert_eq!(a.subuid, "op:100000:65536\nalice:165536:65536\n");
        let u = a.user("alice").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str(), u.shell.as_str()), (1001, 1001, "/home/alice", "/bin/sh"));
    }

    #[test]
    fn an_existing_user_only_gains_groups() {
        let mut a = debian();
        a.ensure_group("web").unwrap();
        let before = a.passwd.clone();
        assert_eq!(a.add_user("op", &["web".into(), "sudo".into()], "/bin/sh", 1).unwrap(), None);
        assert_eq!(a.passwd, before, "the shell of an existing user is not changed by add_user");
        assert!(a.group.contains("\nsudo:x:27:op\n") && a.group.contains("\nweb:x:1001:op\n"), "{}", a.group);
    }

    #[test]
    fn regular_groups_count_up_from_1000_and_are_idempotent() {
        let mut a = debian();
        assert_eq!(a.ensure_group("web").unwrap(), 1001);
        assert_eq!(a.ensure_group("web").unwrap(), 1001);
        assert_eq!(a.ensure_group("docker").unwrap(), 102);
        assert_eq!(a.group.matches("web:").count(), 1);
        assert!(a.gshadow.ends_with("web:!::\n"));
    }

    #[test]
    fn passwords_lock_shell_and_gecos() {
        let mut a = debian();
        a.lock_password("op").unwrap();
        a.lock_password("op").unwrap();
        assert_eq!(a.password_field("op").unwrap(), "!$6$salt$hash");
        a.set_password("op", "$6$new$h").unwrap();
        assert_eq!(a.password_field("op").unwrap(), "$6$new$h");
        a.set_shell("op", "/bin/sh").unwrap();
        a.set_gecos("op", "Operator").unwrap();
        assert!(a.passwd.contains("\nop:x:1000:1000:Operator:/home/op:/bin/sh\n"), "{}", a.passwd);
        assert_eq!(a.set_password("ghost", "x"), Err(AccountsError::NoUser { user: "ghost".into() }));
    }

    #[test]
    fn a_missing_group_is_named() {
        let mut a = debian();
        let e = a.add_user("bob", &["wheel".into()], "/bin/sh", 1).unwrap_err();
        assert_eq!(e, AccountsError::NoGroup { user: "bob".into(), group: "wheel".into() });
        assert!(a.user("bob").is_none(), "nothing was added");
    }

    #[test]
    fn sha512_crypt_matches_openssl() {
        // `openssl passwd -6 -salt sN6YMVX814V/ZX8O opsecret`
        assert_eq!(
            sha512_crypt("opsecret", "sN6YMVX814V/ZX8O"),
            "$6$sN6YMVX814V/ZX8O$6S1hdsYtYn5yer/ANCbkmvBO3sT05nLlOEytdnAHFCEyuGzY.d4EHrZW30HsLIQ64uaZoUPBzftKOMS2pA/GQ1"
        );
    }
}
