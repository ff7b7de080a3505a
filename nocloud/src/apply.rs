//! Carrying out a `Plan`: the file writes, owners and modes. Every failure becomes one line
//! in the returned list; the boot goes on.

use crate::plan::{self, FileWrite, Keys, Plan, ACCOUNT_FILES};
use lightwhale_types::accounts::{Accounts, Home};
use lightwhale_types::config::Filesystems;
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
    visudo_accepts(&path, rules.as_bytes()).map_err(|e| std::io::Error::other(format!("{e}, none installed")))?;
    replace(&path, rules.as_bytes(), 0o440)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o440))
}

/// `visudo -c` on `text` as the file `path` would hold it, checked in a file beside it
/// whose name starts with a dot (sudo skips such names, should one be left behind).
fn visudo_accepts(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let check = path.with_file_name(format!(".{name}.lightwhale-check"));
    let _ = fs::remove_file(&check);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o440).open(&check)?;
    f.write_all(text)?;
    drop(f);
    let checked = std::process::Command::new(VISUDO)
        .args(["-c", "-q", "-f"])
        .arg(&check)
        .stdin(std::process::Stdio::null())
        .output();
    let _ = fs::remove_file(&check);
    let out = checked.map_err(|e| std::io::Error::other(format!("starting {VISUDO}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).trim().to_string();
    Err(std::io::Error::other(format!("visudo rejects it ({}): {said}", out.status)))
}

/// Writes one `write_files` entry. Before anything is made, the path is resolved as far as
/// it exists (symbolic links followed) and the whole of it checked again, so a link cannot
/// carry the file, or a directory made on its way, out of the writable directories; the
/// file itself is never a link. A file sudo reads is written only if visudo accepts it.
fn write_file(root: &Root, f: &FileWrite, fs_config: &Filesystems, data_root: &str) -> std::io::Result<()> {
    let path = root.path(&f.path);
    let parent = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    let real = resolved(root, parent)?.join(path.file_name().unwrap_or_default());
    let real_text = real.to_string_lossy();
    plan::file_allowed(&real_text, fs_config, data_root)
        .map_err(|why| std::io::Error::other(format!("resolves to {}: {why}", real.display())))?;
    fs::create_dir_all(parent)?;
    // The same answer now that the directories exist (nothing else runs during the boot).
    if resolved(root, parent)?.join(path.file_name().unwrap_or_default()) != real {
        return Err(std::io::Error::other("its directories changed while they were made"));
    }
    if plan::is_sudoers(&real_text) {
        return write_sudoers_file(root, &real, f);
    }
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

/// The absolute path `dir` stands for inside the root: its deepest existing ancestor with
/// symbolic links resolved, then the parts that do not exist yet.
fn resolved(root: &Root, dir: &Path) -> std::io::Result<PathBuf> {
    let mut existing = dir;
    let mut missing = Vec::new();
    while fs::symlink_metadata(existing).is_err() {
        missing.push(existing.file_name().ok_or_else(|| std::io::Error::other("no existing directory"))?);
        existing = existing.parent().ok_or_else(|| std::io::Error::other("no existing directory"))?;
    }
    let real = fs::canonicalize(existing)?;
    let rel = real.strip_prefix(root.dir).map_err(|_| std::io::Error::other("leaves the root"))?;
    let mut out = Path::new("/").join(rel);
    out.extend(missing.iter().rev());
    Ok(out)
}

/// A seed's file in sudo's configuration: the whole new text (the old one first when
/// appending) passes `visudo -c`, then replaces the file in one rename; if visudo refuses,
/// the file stays as it was.
fn write_sudoers_file(root: &Root, real: &Path, f: &FileWrite) -> std::io::Result<()> {
    let path = root.path(&real.to_string_lossy());
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other("is a symbolic link; not followed"));
    }
    let mut text = if f.append { fs::read(&path).unwrap_or_default() } else { Vec::new() };
    text.extend_from_slice(&f.content);
    visudo_accepts(&path, &text).map_err(|e| std::io::Error::other(format!("{e}; nothing written")))?;
    replace(&path, &text, f.mode)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(f.mode))?;
    chown(&path, f.uid, f.gid)
}
