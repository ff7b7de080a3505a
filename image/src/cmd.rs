//! Running host tools: quietly, with inherited output, or logged with progress lines.

use crate::error::{Error, IoContext, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// How long a long command may go without a line on the console: then its latest output
/// line is shown, so a step that takes minutes says that it is alive and how far it is.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// How many of a failed command's last output lines are printed with its error.
const FAILURE_TAIL: usize = 30;

/// One piece of a command's output: a line, or a progress bar's redraw (ended by `\r`).
struct Segment {
    text: String,
    redraw: bool,
}

/// Reads `stream` into segments at `\n` and `\r` (mksquashfs redraws its bar with `\r`).
fn segments(mut stream: impl Read, tx: mpsc::Sender<Segment>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                let text = String::from_utf8_lossy(&pending).into_owned();
                pending.clear();
                if tx.send(Segment { text, redraw: b == b'\r' }).is_err() {
                    return;
                }
            } else {
                pending.push(b);
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(Segment { text: String::from_utf8_lossy(&pending).into_owned(), redraw: false });
    }
}

/// Pure: what the heartbeat shows of an output line: a progress bar's `[===-   ]` left out,
/// white space folded, at most 110 characters.
pub fn progress_summary(line: &str) -> String {
    let mut s = line.trim();
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            if rest[..end].chars().all(|c| matches!(c, '=' | '-' | ' ' | '|' | '/' | '\\' | '#' | '>')) {
                s = rest[end + 1..].trim();
            }
        }
    }
    let folded = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match folded.char_indices().nth(110) {
        Some((i, _)) => format!("{}...", &folded[..i]),
        None => folded,
    }
}

/// Runs a long command with all output in `log`; lines accepted by `show` are echoed with
/// an indent as progress, and after `HEARTBEAT` without a line the latest output is shown.
/// On failure the last lines of output are printed and `hint_for(log text)` says what to do.
pub fn run_logged(
    step: &'static str,
    cmd: &mut Command,
    log: &Path,
    show: impl Fn(&str) -> bool,
    hint_for: impl Fn(&str) -> String,
) -> Result<()> {
    run_logged_measured(step, cmd, log, show, hint_for, || None)
}

/// `run_logged` for a command whose output says little about how far it is: the heartbeat
/// shows what `measure` says (e.g. how much of its output file is written) when it says
/// something, else the latest output line.
pub fn run_logged_measured(
    step: &'static str,
    cmd: &mut Command,
    log: &Path,
    show: impl Fn(&str) -> bool,
    hint_for: impl Fn(&str) -> String,
    measure: impl Fn() -> Option<String>,
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
    let (tx, rx) = mpsc::channel::<Segment>();
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || segments(stdout, tx));
    let t2 = std::thread::spawn(move || segments(stderr, tx2));
    let started = Instant::now();
    let mut last_shown = started;
    let mut latest = String::new();
    let mut text = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(seg) => {
                if !seg.redraw {
                    let _ = writeln!(file, "{}", seg.text);
                    text.push_str(&seg.text);
                    text.push('\n');
                    if show(&seg.text) {
                        println!("    {}", seg.text);
                        last_shown = Instant::now();
                    }
                }
                if !seg.text.trim().is_empty() {
                    latest = seg.text;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_shown.elapsed() >= HEARTBEAT {
            let summary = measure().unwrap_or_else(|| progress_summary(&latest));
            let doing = if summary.is_empty() { "running".to_string() } else { summary };
            println!("    ... {} s: {doing}", started.elapsed().as_secs());
            let _ = std::io::stdout().flush();
            last_shown = Instant::now();
        }
    }
    let _ = t1.join();
    let _ = t2.join();
    let status = child.wait().ctx(step, log)?;
    if !status.success() {
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(FAILURE_TAIL)..] {
            eprintln!("    | {line}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bars_and_long_lines_are_summarised() {
        assert_eq!(progress_summary("[=========-          ] 1234/5678  21%"), "1234/5678 21%");
        assert_eq!(progress_summary("   Compiling  serde v1.0.200"), "Compiling serde v1.0.200");
        assert_eq!(progress_summary("[sudo] not a bar"), "[sudo] not a bar");
        let long = "x".repeat(300);
        assert_eq!(progress_summary(&long).len(), 113);
        assert_eq!(progress_summary("  "), "");
    }

    #[test]
    fn output_is_split_at_newlines_and_redraws() {
        let (tx, rx) = mpsc::channel();
        segments(&b"one\n[==  ] 1%\r[=== ] 50%\rlast"[..], tx);
        let got: Vec<(String, bool)> = rx.iter().map(|s| (s.text, s.redraw)).collect();
        assert_eq!(
            got,
            [("one".into(), false), ("[==  ] 1%".into(), true), ("[=== ] 50%".into(), true), ("last".into(), false)]
        );
    }

    #[test]
    fn the_log_holds_whole_lines_and_a_failure_says_why() {
        let dir = std::env::temp_dir().join(format!("lw-run-logged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo first; printf '[==  ] 1/2 50%%\\r'; echo done"]);
        run_logged("test", &mut cmd, &log, |_| false, |_| String::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\ndone\n", "redraws stay out of the log");
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo why; exit 3"]);
        let e = run_logged("test", &mut failing, &log, |_| false, |t| format!("hint:{}", t.trim())).unwrap_err();
        assert!(e.to_string().contains("hint:why"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
