//! A Lightwhale VM under test, in the spirit of the NixOS test driver: start, read the
//! serial console, log in through the real getty, run commands, reboot, power off, crash.

use crate::console::{find, Console};
use crate::qemu::Config;
use crate::VmError;
use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// QEMU processes this process runs now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A running QEMU, counted in `RUNNING` while it lives.
struct Qemu(Child);

impl Qemu {
    fn new(child: Child) -> Qemu {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Qemu(child)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A scenario may run only as many machines at a time as `MACHINES_AT_ONCE` says: `cargo
/// xtask test` runs scenarios side by side counting on that number.
fn check_machines_at_once() -> Result<(), VmError> {
    let exe = std::env::current_exe().unwrap_or_default();
    let scenario = crate::scenario_of(&exe.file_stem().unwrap_or_default().to_string_lossy()).to_string();
    let allowed = crate::machines_at_once(&scenario);
    if RUNNING.load(Ordering::SeqCst) >= allowed {
        return Err(VmError::Setup(format!(
            "{scenario} starts more than {allowed} machine(s) at a time: raise its count in \
             MACHINES_AT_ONCE (vm-tests/src/lib.rs), which `cargo xtask test` schedules by"
        )));
    }
    Ok(())
}

pub struct Machine {
    pub name: String,
    config: Config,
    child: Option<Qemu>,
    stdin: Option<ChildStdin>,
    pub console: Console,
    /// Where `wait_for_console_text` continues from.
    cursor: usize,
    dir: PathBuf,
    /// (guest port -> host port)
    ports: Vec<(u16, u16)>,
    password: Option<String>,
    nonce: u64,
    /// When the current QEMU process started (for boot timings).
    pub started: Instant,
    /// QEMU runs in a process group of its own, out of reach of the terminal's Ctrl-C.
    own_group: bool,
}

/// Output and exit code of a command run in the guest.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub text: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// `'...'` quoting for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The guest's `base64` (coreutils, RFC 4648 with padding) on the host's side.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Removes kernel log lines (`[   12.345678] ...` up to the end of the line) that the
/// console interleaves with command output.
pub fn strip_kernel_lines(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let mut j = i + 1;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let digits = |j: &mut usize| {
                let st = *j;
                while *j < b.len() && b[*j].is_ascii_digit() {
                    *j += 1;
                }
                *j > st
            };
            if digits(&mut j)
                && j < b.len()
                && b[j] == b'.'
                && {
                    j += 1;
                    digits(&mut j)
                }
                && j < b.len()
                && b[j] == b']'
            {
                i = b[j..].iter().position(|&c| c == b'\n').map(|p| j + p + 1).unwrap_or(b.len());
                continue;
            }
        }
        if b[i] != b'\r' && b[i] != b'\n' {
            out.push(b[i] as char);
        }
        i += 1;
    }
    out
}

impl Machine {
    /// Starts QEMU. Host ports for the config's forwards are replaced by free ones, so
    /// tests can run next to a `cargo xtask qemu` session.
    ///
    /// Under TCG the vCPUs share one host thread: with a thread each, QEMU 10.0 once
    /// aborted (`iotlb_to_section: Assertion ... failed`) and twice lost the second vCPU's
    /// timer (RCU stalls, a boot hung in a driver probe) in CI runs, each time in a
    /// different scenario.
    pub fn start(name: &str, mut config: Config) -> Result<Machine, VmError> {
        config.exit_on_reboot = true;
        config.single_thread_tcg = true;
        Machine::start_at(name, &crate::work_dir().join(name), config, false)
    }

    /// Like `start`, with the machine's files (console log, QMP socket) in `dir` and QEMU
    /// in a process group of its own, so a Ctrl-C at the terminal reaches only the caller,
    /// which then shuts the machine down cleanly (`cargo xtask cluster`).
    pub fn start_in(name: &str, dir: &Path, config: Config) -> Result<Machine, VmError> {
        Machine::start_at(name, dir, config, true)
    }

    fn start_at(name: &str, dir: &Path, mut config: Config, own_group: bool) -> Result<Machine, VmError> {
        let dir = dir.to_path_buf();
        // Nothing from an earlier run (console log, pinned host keys) may leak into this one.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| VmError::Setup(format!("{}: {e}", dir.display())))?;
        let ports: Vec<(u16, u16)> = config.forwards.iter().map(|(_, g)| (*g, free_port())).collect();
        config.forwards = ports.iter().map(|(g, h)| (*h, *g)).collect();
        config.qmp = Some(dir.join("qmp.sock"));
        if config.is_uefi() && config.ovmf_vars.is_none() {
            let vars = dir.join("OVMF_VARS.fd");
            let src = crate::qemu::ovmf_vars(config.secure_boot);
            std::fs::copy(&src, &vars)
                .map_err(|e| VmError::Setup(format!("copying {}: {e} (install ovmf)", src.display())))?;
            config.ovmf_vars = Some(vars);
        }
        let mut m = Machine {
            name: name.into(),
            config,
            child: None,
            stdin: None,
            console: Console::default(),
            cursor: 0,
            dir,
            ports,
            password: None,
            nonce: 0,
            started: Instant::now(),
            own_group,
        };
        m.spawn()?;
        Ok(m)
    }

    fn spawn(&mut self) -> Result<(), VmError> {
        if !self.own_group {
            check_machines_at_once()?;
        }
        let _ = std::fs::remove_file(self.dir.join("qmp.sock"));
        let log_path = self.dir.join("console.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| VmError::Setup(e.to_string()))?;
        let stderr = std::fs::File::create(self.dir.join("qemu.stderr")).map_err(|e| VmError::Setup(e.to_string()))?;
        let mut cmd = Command::new("qemu-system-x86_64");
        if self.own_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .args(self.config.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| VmError::Setup(format!("starting qemu-system-x86_64: {e} (run `cargo xtask deps`)")))?;
        self.started = Instant::now();
        self.stdin = child.stdin.take();
        // A fresh console per QEMU process: offsets from an earlier run do not apply.
        self.console = Console::default();
        self.console.attach(child.stdout.take().expect("piped"), log);
        self.cursor = 0;
        self.password = None;
        self.child = Some(Qemu::new(child));
        Ok(())
    }

    /// The running QEMU's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// The QMP control socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    pub fn host_port(&self, guest: u16) -> u16 {
        self.ports.iter().find(|(g, _)| *g == guest).map(|(_, h)| *h).unwrap_or(0)
    }

    fn err_timeout(&self, what: String, timeout: Duration) -> VmError {
        VmError::Timeout { machine: self.name.clone(), what, secs: timeout.as_secs(), console: self.console.tail(40) }
    }

    /// Waits for `text` on the console after the previous match; returns the whole line.
    pub fn wait_for_console_text(&mut self, text: &str, timeout: Duration) -> Result<String, VmError> {
        let needle = text.as_bytes();
        let found = self.console.wait(self.cursor, timeout, |t| {
            find(t, needle).map(|i| {
                let line_start = t[..i].iter().rposition(|&c| c == b'\n').map(|p| p + 1).unwrap_or(0);
                let line_end = t[i..].iter().position(|&c| c == b'\n').map(|p| i + p).unwrap_or(t.len());
                let line = String::from_utf8_lossy(&t[line_start..line_end]).trim_end_matches('\r').to_string();
                (line, i + needle.len())
            })
        });
        match found {
            Some((line, end)) => {
                self.cursor = end;
                Ok(line)
            }
            None => Err(self.err_timeout(format!("console text {text:?}"), timeout)),
        }
    }

    /// Waits for a complete console line (through its newline) that contains `text`;
    /// returns the line. Use this when the rest of the line matters.
    pub fn wait_for_console_line(&mut self, text: &str, timeout: Duration) -> Result<String, VmError> {
        let needle = text.as_bytes();
        let found = self.console.wait(self.cursor, timeout, |t| {
            let i = find(t, needle)?;
            let line_end = i + t[i..].iter().position(|&c| c == b'\n')?;
            let line_start = t[..i].iter().rposition(|&c| c == b'\n').map(|p| p + 1).unwrap_or(0);
            let line = String::from_utf8_lossy(&t[line_start..line_end]).trim_end_matches('\r').to_string();
            Some((line, line_end + 1))
        });
        match found {
            Some((line, end)) => {
                self.cursor = end;
                Ok(line)
            }
            None => Err(self.err_timeout(format!("console line with {text:?}"), timeout)),
        }
    }

    /// Waits for `text` without consuming it; returns when it arrived, measured from the
    /// start of QEMU (exact even if it arrived before this call).
    pub fn time_until(&mut self, text: &str, timeout: Duration) -> Result<Duration, VmError> {
        let found = self.console.wait(self.cursor, timeout, |t| find(t, text.as_bytes()).map(|i| (i, i)));
        match found {
            Some((_, at)) => {
                let arrived = self.console.arrival(at).unwrap_or_else(Instant::now);
                Ok(arrived.saturating_duration_since(self.started))
            }
            None => Err(self.err_timeout(format!("console text {text:?}"), timeout)),
        }
    }

    /// Like `wait_for_console_text` but for any of several texts; returns the index found.
    pub fn wait_for_any(&mut self, texts: &[&str], timeout: Duration) -> Result<usize, VmError> {
        let found = self.console.wait(self.cursor, timeout, |t| {
            texts
                .iter()
                .enumerate()
                .filter_map(|(k, n)| find(t, n.as_bytes()).map(|i| (i, k, n.len())))
                .min()
                .map(|(i, k, l)| (k, i + l))
        });
        match found {
            Some((k, end)) => {
                self.cursor = end;
                Ok(k)
            }
            None => Err(self.err_timeout(format!("any of {texts:?}"), timeout)),
        }
    }

    pub fn send(&mut self, text: &str) -> Result<(), VmError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| VmError::Setup("machine is not running".into()))?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| VmError::Setup(format!("writing to the console: {e}")))
    }

    /// Logs in on the serial getty exactly as a person would, then turns off line editing
    /// so commands and their output can be told apart.
    pub fn login(&mut self, user: &str, password: &str, timeout: Duration) -> Result<(), VmError> {
        self.wait_for_console_text("login: ", timeout)?;
        // agetty may print the prompt before it is ready to read; a short pause avoids
        // typing into the void.
        std::thread::sleep(Duration::from_millis(500));
        self.send(&format!("{user}\n"))?;
        self.wait_for_console_text("Password: ", Duration::from_secs(60))?;
        self.send(&format!("{password}\n"))?;
        if self.wait_for_any(&["$ ", "# ", "Login incorrect"], Duration::from_secs(90))? == 2 {
            return Err(VmError::LoginFailed {
                machine: self.name.clone(),
                user: user.into(),
                console: self.console.tail(10),
            });
        }
        self.password = Some(password.into());
        // Job control on (each command runs in its own process group, which execute's
        // guest-side timeout kills), job notices off the console.
        self.send("set +o emacs +o vi -m +b; stty -echo; PS1=''; PS2=''\n")?;
        let out = self.execute("echo ready", Duration::from_secs(60))?;
        if out.text.trim() != "ready" {
            return Err(VmError::Setup(format!("shell did not answer after login: {:?}", out.text)));
        }
        // Keep kernel and init messages off the console while commands run.
        self.sudo("dmesg -n 1", Duration::from_secs(60))?;
        Ok(())
    }

    /// Runs `cmd` in the logged-in shell (aliases included: a subshell of an interactive
    /// shell does not expand them unless told to) with `pipefail`, returns its exit
    /// code and combined output. Output travels base64-encoded between unique markers, so
    /// console noise cannot corrupt it. The guest kills the command (its whole process
    /// group) when `timeout` runs out, so a hung command does not take the console with it;
    /// it then exits with 137.
    pub fn execute(&mut self, cmd: &str, timeout: Duration) -> Result<Output, VmError> {
        // The watcher ends with SIGKILL to its process group: a plain `kill` (SIGTERM) left
        // it asleep in the console's shell, and every command then took its whole timeout
        // (and a `wait_until_succeeds` whose first try failed had no time left to retry).
        self.nonce += 1;
        let n = self.nonce;
        let secs = timeout.as_secs().max(1);
        let line = format!(
            "( shopt -s expand_aliases; set -o pipefail; eval \"$(printf %s {} | base64 -d)\" ) </dev/null >/tmp/.lw-out 2>&1 & lwp=$!; \
             ( sleep {secs}; kill -KILL -- -$lwp ) >/dev/null 2>&1 & lww=$!; \
             wait $lwp; lwrc=$?; kill -KILL -- -$lww 2>/dev/null; wait $lww 2>/dev/null; \
             printf '@@LW%s:%s:' {n} $lwrc; base64 -w0 /tmp/.lw-out; printf ':WL@@\\n'\n",
            B64.encode(cmd.as_bytes())
        );
        if line.len() > 4000 {
            return Err(VmError::Setup(format!("command too long for the console ({} bytes)", line.len())));
        }
        self.send(&line)?;
        let prefix = format!("@@LW{n}:");
        // The guest gives up first; this waits a little longer for its answer.
        let found = self.console.wait(self.cursor, timeout + Duration::from_secs(30), |t| {
            let i = find(t, prefix.as_bytes())?;
            let rest = &t[i + prefix.len()..];
            let end = find(rest, b":WL@@")?;
            let body = String::from_utf8_lossy(&rest[..end]).into_owned();
            let (code, data) = body.split_once(':')?;
            Some(((code.parse::<i32>().unwrap_or(-1), data.to_string()), i + prefix.len() + end + 5))
        });
        match found {
            Some(((code, data), end)) => {
                self.cursor = end;
                let clean = strip_kernel_lines(&data);
                if let Some(bad) = clean.chars().find(|c| !(c.is_ascii_alphanumeric() || "+/=".contains(*c))) {
                    return Err(VmError::Setup(format!(
                        "output of {cmd:?} was garbled on the console (found {bad:?}): {data:?}"
                    )));
                }
                let bytes = B64.decode(clean.as_bytes()).map_err(|e| {
                    VmError::Setup(format!("output of {cmd:?} did not arrive whole on the console ({e}): {data:?}"))
                })?;
                Ok(Output { code, text: String::from_utf8_lossy(&bytes).into_owned() })
            }
            None => Err(self.err_timeout(format!("command {cmd:?}"), timeout)),
        }
    }

    /// Runs `cmd` and fails unless it exits 0.
    pub fn succeed(&mut self, cmd: &str, timeout: Duration) -> Result<String, VmError> {
        let o = self.execute(cmd, timeout)?;
        if o.code != 0 {
            return Err(VmError::CommandFailed {
                machine: self.name.clone(),
                command: cmd.into(),
                code: o.code,
                output: o.text,
            });
        }
        Ok(o.text)
    }

    /// Runs `cmd` and fails if it exits 0.
    pub fn fail(&mut self, cmd: &str, timeout: Duration) -> Result<String, VmError> {
        let o = self.execute(cmd, timeout)?;
        if o.code == 0 {
            return Err(VmError::UnexpectedSuccess { machine: self.name.clone(), command: cmd.into(), output: o.text });
        }
        Ok(o.text)
    }

    /// `sudo sh -c cmd` with the login password fed to sudo on stdin.
    pub fn sudo(&mut self, cmd: &str, timeout: Duration) -> Result<String, VmError> {
        let pw = self.password.clone().unwrap_or_default();
        self.succeed(
            &format!("printf '%s\\n' {} | sudo -S -p '' sh -c {}", shell_quote(&pw), shell_quote(cmd)),
            timeout,
        )
    }

    /// A one-file container image from the image's static BusyBox (there is no registry
    /// here), tagged `tag`, with BusyBox as its entrypoint.
    pub fn import_busybox_image(&mut self, tag: &str) -> Result<(), VmError> {
        self.succeed(
            &format!("mkdir -p /tmp/img && cp /usr/bin/busybox /tmp/img/busybox && tar -C /tmp/img -c busybox | docker import -c 'ENTRYPOINT [\"/busybox\"]' - {tag}"),
            Duration::from_secs(180),
        )
        .map(|_| ())
    }

    /// `lightwhale status --json` in the guest, parsed.
    pub fn status(&mut self) -> Result<serde_json::Value, VmError> {
        let text = self.succeed("lightwhale status --json", Duration::from_secs(60))?;
        serde_json::from_str(&text)
            .map_err(|e| VmError::Setup(format!("`lightwhale status --json` printed no JSON ({e}): {text}")))
    }

    /// Retries `cmd` until it succeeds (e.g. waiting for a service).
    pub fn wait_until_succeeds(&mut self, cmd: &str, timeout: Duration) -> Result<String, VmError> {
        crate::retry(timeout, Duration::from_secs(1), |left| {
            let o = self.execute(cmd, left.max(Duration::from_secs(30)))?;
            if o.code == 0 {
                return Ok(o.text);
            }
            Err(VmError::CommandFailed {
                machine: self.name.clone(),
                command: format!("{cmd} (retried for {} s)", timeout.as_secs()),
                code: o.code,
                output: o.text,
            })
        })
    }

    /// Guest-initiated reboot through `sudo reboot`. The console log level is restored
    /// first so the shutdown messages are visible. On machines from `start` the guest's
    /// reboot ends QEMU (`-no-reboot`) and a fresh QEMU boots the same disks and ports, as
    /// after a power cycle: under TCG, a reset inside the same process made the next boot
    /// slow (the kernel reached "Memory:" after 18 s instead of 6 s).
    pub fn reboot(&mut self) -> Result<(), VmError> {
        self.cursor = self.console.mark();
        let pw = self.password.clone().unwrap_or_default();
        self.send(&format!("printf '%s\\n' {} | sudo -S -p '' sh -c 'dmesg -n 7; reboot'\n", shell_quote(&pw)))?;
        self.password = None;
        self.wait_for_console_text("shutdown: rebooting", Duration::from_secs(180))?;
        if self.config.exit_on_reboot {
            self.wait_exit(Duration::from_secs(60))?;
            self.spawn()?;
        }
        Ok(())
    }

    /// `sudo poweroff`, then waits for QEMU to exit.
    pub fn shutdown(&mut self) -> Result<(), VmError> {
        let pw = self.password.clone().unwrap_or_default();
        self.send(&format!("printf '%s\\n' {} | sudo -S -p '' sh -c 'dmesg -n 7; poweroff'\n", shell_quote(&pw)))?;
        self.wait_exit(Duration::from_secs(180))
    }

    /// ACPI power button (QMP system_powerdown), then waits for QEMU to exit.
    pub fn press_power_button(&mut self) -> Result<(), VmError> {
        crate::qmp::command(&self.qmp_socket(), "system_powerdown")?;
        self.wait_exit(Duration::from_secs(180))
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.0.try_wait() {
                    self.child = None;
                    self.stdin = None;
                    return Ok(());
                }
            } else {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(self.err_timeout("QEMU to exit".into(), timeout))
    }

    /// Power cut: QEMU is killed, the guest gets no chance to flush anything.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
        self.stdin = None;
    }

    /// Powers the machine on again (after `crash`, `shutdown` or a power button press),
    /// with the same disks and ports.
    pub fn power_on(&mut self) -> Result<(), VmError> {
        self.crash();
        self.spawn()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the console printed since `start`, across reboots and power cycles
    /// (`console` holds only the running QEMU's).
    pub fn console_history(&self) -> Result<String, VmError> {
        let log = self.dir.join("console.log");
        std::fs::read(&log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| VmError::Host(format!("{}: {e}", log.display())))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.crash();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_machine_at_once_is_refused_unless_declared() {
        // This binary (the harness's unit tests) is no scenario of MACHINES_AT_ONCE: one.
        assert!(check_machines_at_once().is_ok());
        let mut qemu = Qemu::new(Command::new("true").spawn().expect("spawn true"));
        let refused = check_machines_at_once().expect_err("a second machine");
        assert!(refused.to_string().contains("MACHINES_AT_ONCE"), "{refused}");
        let _ = qemu.0.wait();
        drop(qemu);
        assert!(check_machines_at_once().is_ok(), "the first one is gone");
    }

    #[test]
    fn kernel_lines_are_removed_from_output() {
        let noisy = "aGVs[   45.123456] virtio_net virtio0 eth0: link up\r\nbG8=";
        assert_eq!(strip_kernel_lines(noisy), "aGVsbG8=");
        assert_eq!(B64.decode(strip_kernel_lines(noisy)).unwrap(), b"hello");
        assert_eq!(strip_kernel_lines("a[b]c"), "a[b]c");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
