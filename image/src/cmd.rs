//! Running host tools: quietly, with inherited output, or logged with progress lines.

use crate::error::{Error, IoContext, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// The command line as a person would type it (shortened), for error messages.
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

fn spawn_error(step: &'static str, cmd: &Command, source: std::io::Error) -> Error {
    Error::Spawn { step, program: cmd.get_program().to_string_lossy().into_owned(), source }
}

/// Runs a command with inherited output; fails with `hint` appended to the message.
pub fn run(step: &'static str, cmd: &mut Command, hint: &str) -> Result<()> {
    let status = cmd.status().map_err(|source| spawn_error(step, cmd, source))?;
    if !status.success() {
        return Err(Error::Command { step, command: describe(cmd), status: status.to_string(), hint: hint.into() });
    }
    Ok(())
}

/// Runs a command quietly, returning stdout; stderr is included in the error.
pub fn output(step: &'static str, cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| spawn_error(step, cmd, source))?;
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
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| spawn_error(step, cmd, source))?;
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

/// Whether `program` is on PATH.
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
