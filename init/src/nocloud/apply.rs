//! Carrying out a `Plan`: the file writes, owners and modes. Every failure becomes one line
//! in the returned list; the boot goes on.

use super::plan::{self, FileWrite, Keys, Plan};
use crate::accounts::{Accounts, Home};
use crate::config::Filesystems;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const VISUDO: &str = "/usr/sbin/visudo";

/// Where the account and configuration files live: `/` on the machine, a scratch tree in
/// the tests.
pub struct Root<'a> {
    pub dir: &'a Path,
}

impl Root<'_> {
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }
}

const ACCOUNT_FILES: [&str; 6] =
    ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid"];

pub fn read_accounts(root: &Root) -> Accounts {
    let r = |p: &str| fs::read_to_string(root.path(p)).unwrap_or_default();
    Accounts {
        passwd: r(ACCOUNT_FILES[0]),
        group: r(ACCOUNT_FILES[1]),
        shadow: r(ACCOUNT_FILES[2]),
        gshadow: r(ACCOUNT_FILES[3]),
        subuid: r(ACCOUNT_FILES[4]),
        subgid: r(ACCOUNT_FILES[5]),
    }
}

/// Replaces a file by rename, keeping the old file's mode and owner (shadow stays 0640
/// root:shadow), so no reader ever sees half a file.
fn replace(path: &Path, data: &[u8], default_mode: u32) -> std::io::Result<()> {
    let (mode, uid, gid) = match fs::metadata(path) {
        Ok(m) => (m.mode() & 0o7777, m.uid(), m.gid()),
        Err(_) => (default_mode, 0, 0),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A dot in the name: sudo skips such files in sudoers.d, should one be left behind.
    let tmp = path.with_file_name(format!(".{name}.lightwhale-new"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn write_or_remove(root: &Root, abs: &str, content: Option<&str>, mode: u32, errors: &mut Vec<String>) {
    let p = root.path(abs);
    let r = match content {
        Some(c) => p.parent().map(fs::create_dir_all).unwrap_or(Ok(())).and_then(|_| replace(&p, c.as_bytes(), mode)),
        None => match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = r {
        errors.push(format!("{abs}: {e}"));
    }
}

/// Applies the plan below `root`; returns the errors.
pub fn apply(plan: &Plan, root: &Root, fs_config: &Filesystems, data_root: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(acc) = &plan.accounts {
        let texts = [&acc.passwd, &acc.group, &acc.shadow, &acc.gshadow, &acc.subuid, &acc.subgid];
        let before = read_accounts(root);
        let old = [&before.passwd, &before.group, &before.shadow, &before.gshadow, &before.subuid, &before.subgid];
        for ((file, new), old) in ACCOUNT_FILES.iter().zip(texts).zip(old) {
            if new != old {
                if let Err(e) = replace(&root.path(file), new.as_bytes(), 0o644) {
                    errors.push(format!("{file}: {e}"));
                }
            }
        }
    }
    for h in &plan.homes {
        if let Err(e) = make_home(root, h) {
            errors.push(format!("home {}: {e}", h.path));
        }
    }
    for k in &plan.keys {
        if let Err(e) = add_keys(root, k) {
            errors.push(format!("SSH keys of {}: {e}", k.user));
        }
    }
    match &plan.sudoers {
        Some(rules) => {
            if let Err(e) = install_sudoers(root, rules) {
                errors.push(format!("{}: {e}", plan::SUDOERS));
            }
        }
        None => write_or_remove(root, plan::SUDOERS, None, 0o440, &mut errors),
    }
    write_or_remove(root, plan::SSHD_DROP_IN, plan.sshd.as_deref(), 0o644, &mut errors);
    write_or_remove(root, plan::NTP_SOURCES, plan.ntp.as_deref(), 0o644, &mut errors);
    for (abs, text) in
        [("/etc/hostname", &plan.hostname), ("/etc/hosts", &plan.hosts), ("/etc/dhcpcd.conf", &plan.dhcpcd)]
    {
        if let Some(t) = text {
            write_or_remove(root, abs, Some(t), 0o644, &mut errors);
        }
    }
    for f in &plan.files {
        if let Err(e) = write_file(root, f, fs_config, data_root) {
            errors.push(format!("write_files {}: {e}", f.path));
        }
    }
    errors
}

fn chown(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
}

/// `useradd --create-home`: mode 0700 (Debian's HOME_MODE) and the files of /etc/skel.
fn make_home(root: &Root, h: &Home) -> std::io::Result<()> {
    let dir = root.path(&h.path);
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    chown(&dir, h.uid, h.gid)?;
    copy_skel(&root.path("/etc/skel"), &dir, h)
}

fn copy_skel(from: &Path, to: &Path, h: &Home) -> std::io::Result<()> {
    let Ok(rd) = fs::read_dir(from) else { return Ok(()) };
    for e in rd.flatten() {
        let meta = fs::symlink_metadata(e.path())?;
        let target = to.join(e.file_name());
        if meta.is_dir() {
            fs::create_dir_all(&target)?;
            copy_skel(&e.path(), &target, h)?;
        } else if meta.is_file() {
            fs::copy(e.path(), &target)?;
        } else {
            continue;
        }
        chown(&target, h.uid, h.gid)?;
    }
    Ok(())
}

/// Appends the keys ~/.ssh/authorized_keys lacks. Refuses symlinks on the way: the file
/// is written as root.
fn add_keys(root: &Root, k: &Keys) -> std::io::Result<()> {
    let not_link = |p: &Path| match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(std::io::Error::other(format!("{} is a symbolic link; not followed", p.display())))
        }
        _ => Ok(()),
    };
    let home = root.path(&k.home);
    not_link(&home)?;
    let ssh = home.join(".ssh");
    not_link(&ssh)?;
    if !ssh.exists() {
        fs::create_dir_all(&ssh)?;
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700))?;
        chown(&ssh, k.uid, k.gid)?;
    }
    let file = ssh.join("authorized_keys");
    not_link(&file)?;
    let current = fs::read_to_string(&file).unwrap_or_default();
    let mut text = current.clone();
    for key in &k.keys {
        if !current.lines().any(|l| l.trim() == key) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(key);
            text.push('\n');
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&file)?;
    f.write_all(text.as_bytes())?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    std::os::unix::fs::fchown(&f, Some(k.uid), Some(k.gid))
}

/// Installs the sudoers rules only if visudo accepts the file: a broken file in
/// sudoers.d makes sudo refuse everything, for every user.
fn install_sudoers(root: &Root, rules: &str) -> std::io::Result<()> {
    let path = root.path(plan::SUDOERS);
    if let Some(d) = path.parent() {
        fs::create_dir_all(d)?;
    }
    let check = path.with_file_name(".90-lightwhale-nocloud.check");
    fs::write(&check, rules)?;
    fs::set_permissions(&check, fs::Permissions::from_mode(0o440))?;
    let checked = crate::command::run(Path::new(VISUDO), &["-c", "-q", "-f", &check.to_string_lossy()]);
    let _ = fs::remove_file(&check);
    if let Err(e) = checked {
        return Err(std::io::Error::other(format!("visudo rejects the rules, none installed: {e}")));
    }
    replace(&path, rules.as_bytes(), 0o440)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o440))
}

/// Writes one `write_files` entry. The directories on the way are made (root, 0755) and
/// the path is checked again after symbolic links are resolved, so a link cannot carry the
/// file out of the writable directories; the file itself is never a link.
fn write_file(root: &Root, f: &FileWrite, fs_config: &Filesystems, data_root: &str) -> std::io::Result<()> {
    let path = root.path(&f.path);
    let parent = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    fs::create_dir_all(parent)?;
    let real_parent = fs::canonicalize(parent)?;
    let rel = real_parent.strip_prefix(root.dir).map_err(|_| std::io::Error::other("leaves the root"))?;
    let real = Path::new("/").join(rel).join(path.file_name().unwrap_or_default());
    plan::file_allowed(&real.to_string_lossy(), fs_config, data_root)
        .map_err(|why| std::io::Error::other(format!("resolves to {}: {why}", real.display())))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).mode(f.mode).custom_flags(libc::O_NOFOLLOW);
    if f.append {
        opts.append(true);
    } else {
        opts.truncate(true);
    }
    let mut file = opts.open(&path)?;
    file.write_all(&f.content)?;
    file.set_permissions(fs::Permissions::from_mode(f.mode))?;
    std::os::unix::fs::fchown(&file, Some(f.uid), Some(f.gid))
}
