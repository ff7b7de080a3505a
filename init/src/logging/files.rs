//! Where logs go: one file per service and one for the init itself under /var/log, each
//! capped with one rotation (`dockerd.log`, then `dockerd.log.1`), so a chatty service can
//! never fill the disk or RAM. With a persistence disk, /var/log is a directory on it
//! (bind-mounted), so what was written before a crash or a power cut is still there at
//! the next boot, under `previous/`; `lightwhale logs` reads both.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use lightwhale_types::logs::*;

/// Below the persistence mount point: this boot's logs, and the previous boot's.
const ON_DISK: &str = "logs";

/// An append-only log file with a size cap and one rotation.
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    // Root only: service output can carry what only root should read.
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

impl LogFile {
    pub fn open(path: PathBuf, cap: u64) -> std::io::Result<LogFile> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path, file, size, cap })
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if should_rotate(self.size, data.len() as u64, self.cap) {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            self.file = open_append(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }
}

/// A service's stdout and stderr: a pipe whose reading end PID 1 keeps and copies into the
/// service's capped log file (a file handed to the service could not be rotated under
/// it). One pipe for the service's whole life, across restarts and setup commands.
pub struct ServiceOutput {
    reader: File,
    writer: std::os::fd::OwnedFd,
    log: LogFile,
}

impl ServiceOutput {
    pub fn open(name: &str) -> std::io::Result<ServiceOutput> {
        use nix::fcntl::OFlag;
        std::fs::create_dir_all(LOG_DIR)?;
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(std::io::Error::from)?;
        // Only the reading end is non-blocking: a service that writes faster than PID 1
        // copies waits rather than losing lines.
        nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(std::io::Error::from)?;
        let log = LogFile::open(path(Path::new(LOG_DIR), name), CAP_BYTES)?;
        Ok(ServiceOutput { reader: File::from(r), writer: w, log })
    }

    /// stdout and stderr for a child (copies of the writing end).
    pub fn stdio(&self) -> std::io::Result<(std::process::Stdio, std::process::Stdio)> {
        Ok((self.writer.try_clone()?.into(), self.writer.try_clone()?.into()))
    }

    pub fn reader(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.reader.as_fd()
    }

    /// Copies whatever is waiting in the pipe into the log.
    pub fn drain(&mut self) {
        use std::io::Read;
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = self.reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = self.log.write(&buf[..n]);
        }
    }
}

/// Where the logs of this boot are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On the persistence disk: kept across reboots and crashes.
    Disk,
    /// In RAM (no persistence disk): gone at power-off.
    Ram,
}

/// At boot, once persistence is ready: with a persistence disk, this boot's logs go to
/// `<data>/logs/current` (bind-mounted at /var/log) after the previous boot's move to
/// `<data>/logs/previous` (visible as /var/log/previous). Without one, /var/log stays in RAM.
pub fn prepare(data: &Path, on_disk: bool) -> std::io::Result<Place> {
    std::fs::create_dir_all(LOG_DIR)?;
    if !on_disk {
        return Ok(Place::Ram);
    }
    let base = data.join(ON_DISK);
    let (current, previous) = (base.join("current"), base.join("previous"));
    std::fs::create_dir_all(&base)?;
    if current.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous)?;
        }
        std::fs::rename(&current, &previous)?;
    }
    std::fs::create_dir_all(&current)?;
    std::fs::create_dir_all(current.join("previous"))?;
    nix::mount::mount(Some(&current), LOG_DIR, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(std::io::Error::from)?;
    // The previous boot's logs, read-only, where `lightwhale logs --previous` looks.
    if previous.exists() {
        let flags = nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(Some(&previous), PREVIOUS_DIR, None::<&str>, flags, None::<&str>)
            .map_err(std::io::Error::from)?;
        let ro = flags | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
        nix::mount::mount(None::<&str>, PREVIOUS_DIR, None::<&str>, ro, None::<&str>).map_err(std::io::Error::from)?;
    }
    Ok(Place::Disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_output_reaches_its_log() {
        let dir = std::env::temp_dir().join(format!("lw-svcout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let mut out =
            ServiceOutput { reader: File::from(r), writer: w, log: LogFile::open(path(&dir, "svc"), 1 << 20).unwrap() };
        let (stdout, _) = out.stdio().unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "echo to-out; echo to-err >&2"])
            .stdout(stdout)
            .stderr(out.stdio().unwrap().1)
            .status()
            .unwrap();
        assert!(status.success());
        out.drain();
        assert_eq!(std::fs::read_to_string(path(&dir, "svc")).unwrap(), "to-out\nto-err\n");
        out.drain(); // nothing waiting: returns at once
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn capped_with_one_rotation() {
        let dir = std::env::temp_dir().join(format!("lw-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = path(&dir, "svc");
        let mut log = LogFile::open(p.clone(), 10).unwrap();
        for line in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n"] {
            log.write(line.as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "eeee\n");
        assert_eq!(std::fs::read_to_string(dir.join("svc.log.1")).unwrap(), "cccc\ndddd\n");
        assert!(!dir.join("svc.log.2").exists());
        // Reopening continues where the file ends.
        let mut again = LogFile::open(p.clone(), 10).unwrap();
        again.write(b"ffff\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "eeee\nffff\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
