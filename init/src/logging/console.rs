//! Console logging for PID 1.
//!
//! Messages go to `/dev/kmsg`, so the kernel prints them on every console with its own
//! uptime stamp and `dmesg` keeps them. Before `/dev` exists (or if kmsg cannot be opened)
//! they go to stderr, which the kernel connects to `/dev/console` for PID 1.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

struct KmsgLogger {
    kmsg: Mutex<Option<File>>,
    /// The init's log file (/var/log/init.log) once there is one; until then lines wait
    /// in `unwritten` (bounded: a boot logs a few hundred lines).
    file: Mutex<FileSink>,
}

struct FileSink {
    file: Option<crate::logging::files::LogFile>,
    unwritten: Vec<String>,
}

/// Lines kept for the log file before it exists.
const UNWRITTEN_LINES: usize = 4000;

static LOGGER: KmsgLogger =
    KmsgLogger { kmsg: Mutex::new(None), file: Mutex::new(FileSink { file: None, unwritten: Vec::new() }) };

/// kmsg priority prefix (`<N>`): warnings and errors stand out in `dmesg --level`.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 5,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for KmsgLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let tag = match record.level() {
            Level::Error => "ERROR: ",
            Level::Warn => "WARNING: ",
            _ => "",
        };
        let text = format!("{}", record.args());
        self.to_file(&text, tag);
        let mut guard = self.kmsg.lock().unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            let written = match guard.as_mut() {
                // One write per record: kmsg turns each write into one log line.
                Some(f) => {
                    f.write_all(format!("<{}>lightwhale: {tag}{line}\n", priority(record.level())).as_bytes()).is_ok()
                }
                None => false,
            };
            if !written {
                let _ = writeln!(std::io::stderr(), "lightwhale: {tag}{line}");
            }
        }
    }

    fn flush(&self) {}
}

impl KmsgLogger {
    /// The same line for the log file, with the uptime stamp the console shows.
    fn to_file(&self, text: &str, tag: &str) {
        let stamp = uptime();
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let sink = &mut *guard;
        for line in text.lines() {
            let line = format!("[{stamp:12.6}] lightwhale: {tag}{line}\n");
            match sink.file.as_mut() {
                Some(f) => {
                    let _ = f.write(line.as_bytes());
                }
                None if sink.unwritten.len() < UNWRITTEN_LINES => sink.unwritten.push(line),
                None => {}
            }
        }
    }
}

/// From now on the init's lines also go to `path` (with what was logged so far).
pub fn attach_file(path: std::path::PathBuf) -> std::io::Result<()> {
    let mut file = crate::logging::files::LogFile::open(path, crate::logging::files::CAP_BYTES)?;
    let mut sink = LOGGER.file.lock().unwrap_or_else(|e| e.into_inner());
    for line in sink.unwritten.drain(..) {
        file.write(line.as_bytes())?;
    }
    sink.file = Some(file);
    Ok(())
}

/// Closes the log file, so the filesystem under it can be unmounted at shutdown.
pub fn detach_file() {
    LOGGER.file.lock().unwrap_or_else(|e| e.into_inner()).file = None;
}

/// Installs the logger. Safe to call again once `/dev` is mounted: it then starts using kmsg.
pub fn init(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug { LevelFilter::Debug } else { LevelFilter::Info });
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    if kmsg.is_some() {
        // Userspace writes to kmsg are rate limited to 10 lines per 5 s by default, which
        // would swallow most of the boot log.
        let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
        if debug {
            // Debug lines have kmsg priority 7, which the console shows only at loglevel 8:
            // lightwhale.debug should put them on the screen, not only in dmesg.
            let _ = std::fs::write("/proc/sys/kernel/printk", "8\n");
        }
    }
    *LOGGER.kmsg.lock().unwrap_or_else(|e| e.into_inner()) = kmsg;
}

/// Once the boot has finished: routine messages (the kernel's and ours) stop printing over
/// the login prompt and the shell; warnings and errors still show. Everything stays in the
/// kernel log (`dmesg`). With lightwhale.debug the console keeps showing everything.
pub fn quiet_console() {
    if log::max_level() < LevelFilter::Debug {
        // console_loglevel 5: messages of priority 4 (warning) and more urgent are printed.
        let _ = std::fs::write("/proc/sys/kernel/printk", "5\n");
    }
}

/// Seconds since boot, for "step took N s" messages.
pub fn uptime() -> f64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME);
    ts.map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9).unwrap_or(0.0)
}

/// The boot steps so far, for `lightwhale status` (written out by stage 2).
static STEPS: Mutex<Vec<crate::facts::BootStep>> = Mutex::new(Vec::new());

/// Every step that has ended, in order.
pub fn boot_steps() -> Vec<crate::facts::BootStep> {
    STEPS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Times a boot step and logs its duration when it ends.
pub struct Step {
    name: &'static str,
    start: std::time::Instant,
}

impl Step {
    pub fn start(name: &'static str) -> Step {
        log::debug!("{name}: starting");
        Step { name, start: std::time::Instant::now() }
    }

    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Logs `<marker>: <detail> (took N s)`; the marker is what benchmarks and tests look for.
    pub fn done(self, detail: &str) {
        let took = self.elapsed_secs();
        log::info!("{}: {detail} (took {took:.2} s)", self.name);
        STEPS.lock().unwrap_or_else(|e| e.into_inner()).push(crate::facts::BootStep {
            name: self.name.into(),
            detail: detail.into(),
            uptime_s: uptime(),
            took_s: took,
        });
    }
}
