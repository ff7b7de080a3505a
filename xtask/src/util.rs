//! Running host tools, timing steps, hashing inputs.

use crate::error::{Error, IoContext, Result};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Prints `==> name` now and `    name: done in N s` when dropped via `done`.
pub struct Step {
    name: String,
    start: Instant,
}

impl Step {
    pub fn start(name: impl Into<String>) -> Step {
        let name = name.into();
        println!("==> {name}");
        let _ = std::io::stdout().flush();
        Step { name, start: Instant::now() }
    }
    pub fn done(self, detail: &str) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        println!("    {}: {detail} ({secs:.1} s)", self.name);
        secs
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
        if s.len() > 300 {
            s.push_str(" ...");
            break;
        }
    }
    s
}

/// Runs a command with inherited output; fails with `hint` appended to the message.
pub fn run(step: &'static str, cmd: &mut Command, hint: &str) -> Result<()> {
    let status = cmd.status().map_err(|source| Error::Spawn {
        step,
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if !status.success() {
        return Err(Error::Command { step, command: describe(cmd), status: status.to_string(), hint: hint.into() });
    }
    Ok(())
}

/// Runs a command quietly, returning stdout; stderr is included in the error.
pub fn output(step: &'static str, cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| Error::Spawn {
        step,
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(Error::Command { step, command: describe(cmd), status: out.status.to_string(), hint: last });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a long command with all output in `log`; lines accepted by `show` are echoed with
/// an indent as progress. On failure `hint_for(log text)` explains what to do.
pub fn run_logged(
    step: &'static str,
    cmd: &mut Command,
    log: &Path,
    show: impl Fn(&str) -> bool,
    hint_for: impl Fn(&str) -> String,
) -> Result<()> {
    let mut file = std::fs::File::create(log).ctx(step, log)?;
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|source| {
            Error::Spawn { step, program: cmd.get_program().to_string_lossy().into_owned(), source }
        })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(l);
        }
    });
    let t2 = std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let _ = tx2.send(l);
        }
    });
    let mut text = String::new();
    for line in rx {
        let _ = writeln!(file, "{line}");
        if show(&line) {
            println!("    {line}");
        }
        text.push_str(&line);
        text.push('\n');
    }
    let _ = t1.join();
    let _ = t2.join();
    let status = child.wait().ctx(step, log)?;
    if !status.success() {
        return Err(Error::Command {
            step,
            command: cmd.get_program().to_string_lossy().into_owned(),
            status: status.to_string(),
            hint: format!("{} Full log: {}", hint_for(&text), log.display()),
        });
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    lightwhale_init::image::sha256_hex(&mut std::fs::File::open(path)?)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hash of a directory tree's paths, modes and contents (for staleness stamps).
pub fn hash_tree(root: &Path, h: &mut Sha256) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<PathBuf> = walk(root)?;
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p)?;
        h.update(p.strip_prefix(root).unwrap_or(&p).as_os_str().as_encoded_bytes());
        h.update(meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            h.update(std::fs::read(&p)?);
        } else if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(&p)?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(())
}

/// Every path below `root` (not following symlinks).
pub fn walk(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// A stamp file holding the key of the inputs a step last ran with.
pub struct Stamp {
    path: PathBuf,
    key: String,
}

impl Stamp {
    pub fn new(path: PathBuf, key: String) -> Stamp {
        Stamp { path, key }
    }
    pub fn fresh(&self) -> bool {
        std::fs::read_to_string(&self.path).map(|s| s.trim() == self.key).unwrap_or(false)
    }
    pub fn write(&self) -> std::io::Result<()> {
        std::fs::write(&self.path, format!("{}\n", self.key))
    }
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
