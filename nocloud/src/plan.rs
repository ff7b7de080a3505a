//! What applying a parsed seed changes, decided in PID 1 on the sandboxed child's answer
//! (untrusted input): every name, path and rule is checked here. Pure: the current account
//! files and config files come in as text, the new texts and files to write go out; `apply`
//! does the writing.

use crate::network::{self, Nic};
use crate::parse::{looks_hashed, NewUser, Parsed};
use crate::{Refused, DEFAULT_USER};
use lightwhale_types::accounts::{Accounts, Home};
use lightwhale_types::config::Filesystems;

/// The files Lightwhale owns on behalf of the seed: rewritten (or removed) whenever a new
/// instance is applied, so they always say what the current seed says.
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/10-lightwhale-nocloud.conf";
pub const SUDOERS: &str = "/etc/sudoers.d/90-lightwhale-nocloud";
pub const NTP_SOURCES: &str = "/etc/chrony/sources.d/nocloud.sources";

/// The account databases. Only the seed's `users`, `groups`, `password` and `chpasswd` keys
/// change them, through the account code (`Plan::accounts`); `write_files` never writes
/// them, nor the backups shadow's tools keep beside them (`/etc/shadow-`).
pub const ACCOUNT_FILES: [&str; 6] =
    ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid"];

/// sudo's configuration: the main file and the files of its include directory.
pub const SUDOERS_FILE: &str = "/etc/sudoers";
pub const SUDOERS_DIR: &str = "/etc/sudoers.d";

/// Pure: whether `path` is an account database or its backup.
pub fn is_account_file(path: &str) -> bool {
    ACCOUNT_FILES.iter().any(|f| path.strip_prefix(f).is_some_and(|rest| rest.is_empty() || rest == "-"))
}

/// Pure: whether sudo reads `path` as configuration (its include directory is not read
/// recursively). A `write_files` entry there is written only if `visudo -c` accepts it.
pub fn is_sudoers(path: &str) -> bool {
    path == SUDOERS_FILE
        || path.strip_prefix(SUDOERS_DIR).and_then(|r| r.strip_prefix('/')).is_some_and(|name| !name.contains('/'))
}

/// The system as it is before the seed is applied.
pub struct Env<'a> {
    pub accounts: &'a Accounts,
    pub filesystems: &'a Filesystems,
    /// The persistence mount point: the raw layout below it is not a place for files.
    pub data_root: &'a str,
    pub hosts: &'a str,
    pub dhcpcd: &'a str,
    pub nics: &'a [Nic],
    /// Days since 1970, for new shadow entries.
    pub lastchg: u64,
}

/// A file to write, owner already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub path: String,
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub append: bool,
}

/// SSH keys to add to a user's ~/.ssh/authorized_keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub user: String,
    pub home: String,
    pub uid: u32,
    pub gid: u32,
    pub keys: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// The new account files, when they changed.
    pub accounts: Option<Accounts>,
    pub homes: Vec<Home>,
    pub keys: Vec<Keys>,
    /// Contents of the seed's own files; None removes the file.
    pub sudoers: Option<String>,
    pub sshd: Option<String>,
    pub ntp: Option<String>,
    /// New /etc/hostname, /etc/hosts and /etc/dhcpcd.conf texts, when they change.
    pub hostname: Option<String>,
    pub hosts: Option<String>,
    pub dhcpcd: Option<String>,
    pub files: Vec<FileWrite>,
    /// One line per change, for the console and the status file.
    pub done: Vec<String>,
    pub refused: Vec<Refused>,
    pub errors: Vec<String>,
}

impl Plan {
    fn refuse(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.refused.push(Refused { what: what.into(), why: why.into() });
    }
}

/// A user or group name Debian's useradd accepts (NAME_REGEX), at most 32 characters.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

/// A host name label (RFC 1123): letters, digits, inner hyphens, at most 63.
fn valid_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty() && h.len() <= 253 && h.split('.').all(valid_label)
}

/// Text that goes into a colon-separated or line-based file as one field.
fn one_field(s: &str) -> bool {
    !s.contains([':', '\n', '\r', '\0'])
}

fn one_line(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\n', '\r', '\0'])
}

/// The (short name, fqdn) to set, after cloud-init's rules: `fqdn` wins over `hostname`, a
/// dotted `hostname` is an fqdn, and meta-data's `local-hostname` is the fallback.
pub fn hostname(p: &Parsed) -> Option<(String, Option<String>)> {
    let u = &p.user;
    let split = |full: &str| (full.split('.').next().unwrap_or(full).to_string(), Some(full.to_string()));
    if let Some(f) = u.fqdn.as_deref().filter(|f| !f.is_empty()) {
        let short = u.hostname.clone().filter(|h| !h.is_empty() && !h.contains('.'));
        return Some(match short {
            Some(s) => (s, Some(f.to_string())),
            None => split(f),
        });
    }
    if let Some(h) = u.hostname.as_deref().filter(|h| !h.is_empty()) {
        return Some(if h.contains('.') { split(h) } else { (h.to_string(), None) });
    }
    let l = p.local_hostname.as_deref()?;
    Some(if l.contains('.') { split(l) } else { (l.to_string(), None) })
}

/// Whether SSH password logins end up on (Some(true)), off (Some(false)) or as the image
/// has them (None). Keys given without `ssh_pwauth: true` turn them off: the image's
/// default password is public, and someone who provisions keys means to log in with them.
pub fn password_logins(ssh_pwauth: Option<bool>, keys_given: bool) -> Option<bool> {
    match ssh_pwauth {
        Some(b) => Some(b),
        None if keys_given => Some(false),
        None => None,
    }
}

/// Where `write_files` may write: below a persisted, volatile or tmpfs directory of the
/// init configuration, never into the read-only image or the persistence device's layout.
pub fn file_allowed(path: &str, fs: &Filesystems, data_root: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if path.ends_with('/')
        || path.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..")
        || path.contains('\0')
    {
        return Err("not a plain path to a file (no //, . or .. parts, no trailing /)".into());
    }
    let below = |dir: &str| path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'));
    if below(data_root) {
        return Err(format!(
            "{data_root} holds the persistence device's own layout; write to the persisted directory itself"
        ));
    }
    if is_account_file(path) {
        return Err("an account database: users, groups and passwords come from the seed's users, groups, password and chpasswd keys, never from write_files".into());
    }
    if [SSHD_DROP_IN, SUDOERS, NTP_SOURCES].contains(&path) {
        return Err("Lightwhale writes this file from the seed's own keys (ssh_pwauth, users' sudo, ntp)".into());
    }
    if fs.persisted.iter().chain(&fs.volatile).chain(&fs.tmpfs).any(|d| below(d)) {
        return Ok(());
    }
    Err(format!(
        "outside the writable directories: {} are kept on the persistence device, {} are writable until reboot; everything else is the read-only image",
        fs.persisted.join(" "),
        fs.volatile.iter().chain(&fs.tmpfs).cloned().collect::<Vec<_>>().join(" ")
    ))
}

/// Valid sudoers rule text for one user (visudo checks the whole file again before use).
fn valid_sudo_rule(rule: &str) -> bool {
    one_line(rule) && !rule.trim_start().starts_with(['#', '@']) && rule.contains('=')
}

/// An NTP server or pool name: a host name or an IP address.
fn valid_ntp_name(n: &str) -> bool {
    valid_hostname(n) || n.parse::<std::net::IpAddr>().is_ok()
}

pub fn plan(p: &Parsed, env: &Env) -> Plan {
    let mut plan = Plan::default();
    let mut acc = env.accounts.clone();
    accounts(p, env, &mut acc, &mut plan);
    if acc != *env.accounts {
        plan.accounts = Some(acc.clone());
    }
    ssh_and_sudo(p, &acc, &mut plan);
    host(p, env, &mut plan);
    files(p, env, &acc, &mut plan);
    ntp(p, &mut plan);
    let (block, refused) = network::render(&p.network, env.nics);
    for (what, why) in refused {
        plan.refuse(what, why);
    }
    let conf = network::splice(env.dhcpcd, &block);
    if conf != env.dhcpcd {
        plan.done.push(if block.is_empty() {
            "network: the previous seed's static configuration removed".to_string()
        } else {
            format!(
                "network: static configuration for {}",
                block.lines().filter_map(|l| l.strip_prefix("interface ")).collect::<Vec<_>>().join(" ")
            )
        });
        plan.dhcpcd = Some(conf);
    }
    plan
}

/// Whether the seed may change this existing account: regular accounts only, never root
/// or a daemon's.
fn regular(acc: &Accounts, name: &str) -> bool {
    acc.user(name).is_none_or(|u| u.uid >= 1000 && u.uid < 60_000)
}

fn accounts(p: &Parsed, env: &Env, acc: &mut Accounts, plan: &mut Plan) {
    let u = &p.user;
    for (g, _) in &u.groups {
        if !valid_name(g) {
            plan.refuse(format!("groups: {g}"), "not a valid group name (lower case letters, digits, _ and -)");
            continue;
        }
        let existed = acc.group_id(g).is_some();
        match acc.ensure_group(g) {
            Ok(gid) if !existed => plan.done.push(format!("group {g} added (gid {gid})")),
            Ok(_) => {}
            Err(e) => plan.errors.push(e.to_string()),
        }
    }
    for nu in &u.users {
        match user_refusal(nu, acc) {
            Some(why) => plan.refuse(format!("users: {}", nu.name), why),
            None => user(nu, env, acc, plan),
        }
    }
    for (g, members) in &u.groups {
        for m in members {
            if !regular(acc, m) {
                plan.refuse(format!("groups: {g}: {m}"), "a system account's groups are not changed from a seed");
            } else if acc.group_id(g).is_some() {
                if let Err(e) = acc.add_to_group(m, g) {
                    plan.errors.push(format!("groups: {g}: {e}"));
                }
            }
        }
    }
    for (user, hash) in &u.passwords {
        let what = format!("password of {user}");
        if acc.user(user).is_none() {
            plan.refuse(what, "no such user");
        } else if !regular(acc, user) {
            plan.refuse(what, "a system account's password is not set from a seed");
        } else if !looks_hashed(hash) || !one_field(hash) {
            plan.refuse(what, "not a crypt hash");
        } else {
            let _ = acc.set_password(user, hash);
            plan.done.push(format!("password of {user} set"));
        }
    }
}

/// Why a `users:` entry cannot be applied at all, if it cannot.
fn user_refusal(nu: &NewUser, acc: &Accounts) -> Option<String> {
    if !valid_name(&nu.name) {
        return Some("not a valid user name (lower case letters, digits, _ and -)".into());
    }
    if !regular(acc, &nu.name) {
        return Some("a system account (uid below 1000) is not changed from a seed".into());
    }
    if acc.user(&nu.name).is_none() && acc.group_id(&nu.name).is_some() {
        return Some(format!("a group named {} exists; the user's own group would clash", nu.name));
    }
    let bad_groups: Vec<&String> = nu.groups.iter().filter(|g| !valid_name(g)).collect();
    if !bad_groups.is_empty() {
        return Some(format!("group names {bad_groups:?} are not valid"));
    }
    if let Some(s) = nu.shell.as_deref().filter(|s| !s.starts_with('/') || !one_field(s)) {
        return Some(format!("shell {s:?} is not an absolute path"));
    }
    None
}

/// Adds or updates one (valid) `users:` entry: its missing groups, the account, gecos,
/// password hash and lock.
fn user(nu: &NewUser, env: &Env, acc: &mut Accounts, plan: &mut Plan) {
    let mut created_groups = Vec::new();
    let missing: Vec<&String> = nu.groups.iter().filter(|g| acc.group_id(g).is_none()).collect();
    for g in missing {
        match acc.ensure_group(g) {
            Ok(_) => created_groups.push(g.clone()),
            Err(e) => plan.errors.push(e.to_string()),
        }
    }
    let shell = nu.shell.clone().unwrap_or_else(|| "/bin/bash".into());
    let home = match acc.add_user(&nu.name, &nu.groups, &shell, env.lastchg) {
        Ok(h) => h,
        Err(e) => return plan.errors.push(e.to_string()),
    };
    let new = home.is_some();
    if let Some(h) = home {
        plan.homes.push(h);
    } else if let Some(s) = &nu.shell {
        let _ = acc.set_shell(&nu.name, s);
    }
    if let Some(g) = nu.gecos.as_deref() {
        if one_field(g) {
            let _ = acc.set_gecos(&nu.name, g);
        } else {
            plan.refuse(format!("users: {} gecos", nu.name), "contains : or a line break");
        }
    }
    let mut notes = Vec::new();
    if let Some(h) = &nu.hash {
        if looks_hashed(h) && one_field(h) {
            let _ = acc.set_password(&nu.name, h);
            notes.push("password set");
        } else {
            plan.refuse(format!("users: {} hashed_passwd", nu.name), "not a crypt hash ($6$... or $y$...)");
        }
    }
    if nu.lock {
        let _ = acc.lock_password(&nu.name);
        notes.push("password login locked");
    }
    if !created_groups.is_empty() {
        plan.done.push(format!("groups {} added for {}", created_groups.join(", "), nu.name));
    }
    plan.done.push(format!(
        "user {} {}{}{}",
        nu.name,
        if new { "added" } else { "updated" },
        if nu.groups.is_empty() { String::new() } else { format!(" (groups {})", nu.groups.join(", ")) },
        if notes.is_empty() { String::new() } else { format!(", {}", notes.join(", ")) }
    ));
}

fn ssh_and_sudo(p: &Parsed, acc: &Accounts, plan: &mut Plan) {
    let u = &p.user;
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    if !u.op_keys.is_empty() {
        wanted.push((DEFAULT_USER.to_string(), u.op_keys.clone()));
    }
    for nu in u.users.iter().filter(|nu| !nu.keys.is_empty()) {
        wanted.push((nu.name.clone(), nu.keys.clone()));
    }
    let mut any_keys = false;
    for (user, keys) in wanted {
        let Some(e) = acc.user(&user).filter(|_| regular(acc, &user)) else {
            plan.refuse(format!("ssh_authorized_keys of {user}"), "no such regular user");
            continue;
        };
        let (good, bad): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| one_line(k.trim()));
        for _ in bad {
            plan.refuse(format!("ssh_authorized_keys of {user}"), "a key spans several lines");
        }
        if good.is_empty() {
            continue;
        }
        any_keys = true;
        plan.done.push(format!("{} SSH key{} for {user}", good.len(), if good.len() == 1 { "" } else { "s" }));
        plan.keys.push(Keys {
            user,
            home: e.home,
            uid: e.uid,
            gid: e.gid,
            keys: good.into_iter().map(|k| k.trim().to_string()).collect(),
        });
    }
    plan.sshd = match password_logins(u.ssh_pwauth, any_keys) {
        Some(on) => {
            plan.done.push(format!(
                "SSH password logins {}{}",
                if on { "on" } else { "off" },
                if u.ssh_pwauth.is_none() { " (keys were given)" } else { "" }
            ));
            Some(format!(
                "# Written at boot from the NoCloud seed (instance {}); replaced by the next seed.\nPasswordAuthentication {}\nKbdInteractiveAuthentication no\n",
                p.instance_id,
                if on { "yes" } else { "no" }
            ))
        }
        None => None,
    };
    let mut rules = String::new();
    for nu in &u.users {
        for r in &nu.sudo {
            if !valid_sudo_rule(r) {
                plan.refuse(
                    format!("users: {} sudo", nu.name),
                    format!("{r:?} is not a one-line sudoers rule like \"ALL=(ALL) NOPASSWD:ALL\""),
                );
            } else if acc.user(&nu.name).is_some() && regular(acc, &nu.name) {
                rules.push_str(&format!("{} {}\n", nu.name, r.trim()));
                plan.done.push(format!("sudo rule for {}", nu.name));
            }
        }
    }
    if !rules.is_empty() {
        plan.sudoers = Some(format!(
            "# Written at boot from the NoCloud seed (instance {}); replaced by the next seed.\n{rules}",
            p.instance_id
        ));
    }
}

fn host(p: &Parsed, env: &Env, plan: &mut Plan) {
    if p.user.preserve_hostname {
        return;
    }
    let Some((short, fqdn)) = hostname(p) else { return };
    if !valid_label(&short) || fqdn.as_deref().is_some_and(|f| !valid_hostname(f)) {
        plan.refuse(
            format!("hostname {}", fqdn.as_deref().unwrap_or(&short)),
            "not a valid host name (letters, digits and inner hyphens, labels of at most 63)",
        );
        return;
    }
    let name = if p.user.prefer_fqdn { fqdn.clone().unwrap_or_else(|| short.clone()) } else { short.clone() };
    plan.done.push(format!("hostname {name}"));
    plan.hostname = Some(format!("{name}\n"));
    if p.user.manage_etc_hosts {
        let hosts = lightwhale_types::hostname::hosts_with(env.hosts, &short, fqdn.as_deref());
        if hosts != env.hosts {
            plan.hosts = Some(hosts);
        }
    }
}

fn owner(acc: &Accounts, spec: Option<&str>) -> Result<(u32, u32), String> {
    let spec = spec.unwrap_or("root:root");
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = acc.user(user).ok_or_else(|| format!("owner {spec}: no user {user}"))?;
    let gid = match group {
        Some(g) => acc.group_id(g).ok_or_else(|| format!("owner {spec}: no group {g}"))?,
        None => u.gid,
    };
    Ok((u.uid, gid))
}

fn files(p: &Parsed, env: &Env, acc: &Accounts, plan: &mut Plan) {
    for f in &p.user.files {
        let what = format!("write_files {}", f.path);
        if let Err(why) = file_allowed(&f.path, env.filesystems, env.data_root) {
            plan.refuse(what, why);
            continue;
        }
        let mode = f.mode.unwrap_or(0o644);
        if mode & 0o6000 != 0 {
            plan.refuse(what, format!("mode {mode:o} makes a setuid or setgid file"));
            continue;
        }
        let (uid, gid) = match owner(acc, f.owner.as_deref()) {
            Ok(o) => o,
            Err(why) => {
                plan.refuse(what, why);
                continue;
            }
        };
        let mode = if is_sudoers(&f.path) { f.mode.unwrap_or(0o440) } else { mode };
        if is_sudoers(&f.path) {
            if let Err(why) = sudoers_file_allowed(uid, mode) {
                plan.refuse(what, why);
                continue;
            }
        }
        let content = f.content();
        plan.done.push(format!(
            "{} {} ({} bytes)",
            if f.append { "appended to" } else { "wrote" },
            f.path,
            content.len()
        ));
        plan.files.push(FileWrite { path: f.path.clone(), content, uid, gid, mode, append: f.append });
    }
}

/// Pure: what sudo demands of a file it reads: owned by root and writable by nobody else
/// (it refuses the whole configuration otherwise).
fn sudoers_file_allowed(uid: u32, mode: u32) -> Result<(), String> {
    if uid != 0 {
        return Err("sudo reads only files owned by root: leave out owner, or give root:root".into());
    }
    if mode & 0o022 != 0 {
        return Err(format!("mode {mode:o} lets others write sudo's configuration; use 0440"));
    }
    Ok(())
}

fn ntp(p: &Parsed, plan: &mut Plan) {
    let Some(n) = p.user.ntp.as_ref().filter(|n| n.enabled) else { return };
    let mut text =
        format!("# Written at boot from the NoCloud seed (instance {}); replaced by the next seed.\n", p.instance_id);
    let mut count = 0;
    for (kind, names) in [("server", &n.servers), ("pool", &n.pools)] {
        for name in names {
            if valid_ntp_name(name) {
                text.push_str(&format!("{kind} {name} iburst\n"));
                count += 1;
            } else {
                plan.refuse(format!("ntp {kind} {name}"), "not a host name or IP address");
            }
        }
    }
    if count > 0 {
        plan.done.push(format!("{count} NTP source{} for chrony", if count == 1 { "" } else { "s" }));
        plan.ntp = Some(text);
    }
}
