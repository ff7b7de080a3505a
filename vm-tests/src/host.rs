//! Host-side checks against a running machine: HTTP through the port forward, SSH with a
//! password (through SSH_ASKPASS, no extra tools) or a key, disk images.

use crate::VmError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn host_err(what: &str, e: impl std::fmt::Display) -> VmError {
    VmError::Host(format!("{what}: {e}"))
}

/// GET http://127.0.0.1:port/path with curl; Ok(body) on HTTP 200.
pub fn http_get(port: u16, path: &str) -> Result<String, VmError> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .map_err(|e| host_err("running curl", e))?;
    if !out.status.success() {
        return Err(VmError::Host(format!(
            "curl :{port}{path} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn http_get_retry(port: u16, path: &str, timeout: Duration) -> Result<String, VmError> {
    crate::retry(timeout, Duration::from_secs(2), |_| http_get(port, path))
}

pub struct Ssh {
    pub port: u16,
    pub user: String,
    /// Our own known_hosts, so host key checks are real and isolated from ~/.ssh.
    pub known_hosts: PathBuf,
}

pub enum Auth<'a> {
    Password(&'a str),
    Key(&'a Path),
}

impl Ssh {
    pub fn new(port: u16, user: &str, dir: &Path) -> Ssh {
        Ssh { port, user: user.into(), known_hosts: dir.join("known_hosts") }
    }

    /// Runs `cmd` over SSH. The host key is pinned on first use (accept-new) and must
    /// match afterwards: a changed key fails the connection.
    pub fn run(&self, auth: Auth, cmd: &str) -> Result<String, VmError> {
        let mut c = Command::new("ssh");
        c.args(["-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ConnectTimeout=30",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ServerAliveInterval=15",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .stdin(Stdio::null());
        let askpass;
        match auth {
            Auth::Password(pw) => {
                askpass = self.known_hosts.with_file_name("askpass.sh");
                std::fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{}'\n", pw.replace('\'', "'\\''")))
                    .map_err(|e| host_err("askpass", e))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| host_err("askpass", e))?;
                c.args([
                    "-o",
                    "PreferredAuthentications=password,keyboard-interactive",
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ])
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0");
            }
            Auth::Key(key) => {
                // BatchMode: any password prompt is a failure, as the scenario demands.
                c.args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "PreferredAuthentications=publickey",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-i",
                ])
                .arg(key);
            }
        }
        c.arg(format!("{}@127.0.0.1", self.user)).arg(cmd);
        let out = c.output().map_err(|e| host_err("running ssh", e))?;
        if !out.status.success() {
            return Err(VmError::Host(format!(
                "ssh -p {} {}@127.0.0.1 {cmd:?} failed ({}): {}",
                self.port,
                self.user,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn run_retry(&self, auth: Auth, cmd: &str, timeout: Duration) -> Result<String, VmError> {
        crate::retry(timeout, Duration::from_secs(3), |_| {
            let a = match &auth {
                Auth::Password(p) => Auth::Password(p),
                Auth::Key(k) => Auth::Key(k),
            };
            self.run(a, cmd)
        })
    }

    /// Forgets pinned host keys (a machine without persistence gets new ones every boot).
    pub fn forget_host_keys(&self) {
        let _ = std::fs::remove_file(&self.known_hosts);
    }

    /// The host key lines pinned so far.
    pub fn pinned_host_keys(&self) -> String {
        std::fs::read_to_string(&self.known_hosts).unwrap_or_default()
    }
}

/// A fresh ed25519 key pair in `dir`; returns the private key path.
pub fn ssh_keygen(dir: &Path) -> Result<PathBuf, VmError> {
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f"])
        .arg(&key)
        .status()
        .map_err(|e| host_err("ssh-keygen", e))?;
    if !st.success() {
        return Err(VmError::Host("ssh-keygen failed".into()));
    }
    Ok(key)
}

/// Installs the public half of `key` for the SSH user, logging in with `password`.
pub fn install_key(ssh: &Ssh, password: &str, key: &Path) -> Result<(), VmError> {
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).map_err(|e| host_err("reading the key", e))?;
    ssh.run_retry(
        Auth::Password(password),
        &format!(
            "mkdir -p -m 700 ~/.ssh && echo '{}' >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys",
            pubkey.trim()
        ),
        std::time::Duration::from_secs(180),
    )?;
    Ok(())
}

/// A sparse raw disk image of `bytes`.
pub fn blank_disk(path: &Path, bytes: u64) -> Result<(), VmError> {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).map_err(|e| host_err("creating disk", e))?;
    f.set_len(bytes).map_err(|e| host_err("sizing disk", e))
}

/// What the guide tells users to do: `echo lightwhale-please-format-me | dd conv=notrunc of=DISK`.
pub fn write_magic_header(path: &Path) -> Result<(), VmError> {
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo lightwhale-please-format-me | dd conv=notrunc status=none of={}",
            crate::machine::shell_quote(&path.to_string_lossy())
        ))
        .status()
        .map_err(|e| host_err("dd", e))?;
    if !st.success() {
        return Err(VmError::Host("writing the magic header with dd failed".into()));
    }
    Ok(())
}

/// A sparse disk of `bytes` that asks to be claimed.
pub fn magic_disk(path: &Path, bytes: u64) -> Result<(), VmError> {
    blank_disk(path, bytes)?;
    write_magic_header(path)
}

pub fn sha256_of(path: &Path) -> Result<String, VmError> {
    let mut f = std::fs::File::open(path).map_err(|e| host_err("hashing", e))?;
    lightwhale_types::image::sha256_hex(&mut f).map_err(|e| host_err("hashing", e))
}

/// What the one-disk recipe in docs/persistence.md does: the ISO written to a disk of
/// `bytes`, a partition added after the image with `sfdisk --append`, the header written to
/// that partition. Returns the partition's first byte.
pub fn one_disk(path: &Path, iso: &Path, bytes: u64) -> Result<u64, VmError> {
    std::fs::copy(iso, path).map_err(|e| host_err("copying the ISO", e))?;
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| host_err("opening disk", e))?;
    f.set_len(bytes).map_err(|e| host_err("sizing disk", e))?;
    drop(f);
    let q = crate::machine::shell_quote(&path.to_string_lossy());
    let script = format!(
        "set -e; echo 'type=83' | sfdisk --quiet --append --no-reread {q}; \
         start=$(sfdisk --dump {q} | awk '/type=83/ {{ sub(\",\", \"\", $4); print $4 }}'); \
         printf lightwhale-please-format-me | dd conv=notrunc status=none bs=512 seek=$start of={q}; echo $start"
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().map_err(|e| host_err("sfdisk", e))?;
    let start: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| {
        VmError::Host(format!("adding the partition with sfdisk failed: {}", String::from_utf8_lossy(&out.stderr)))
    })?;
    Ok(start * 512)
}
