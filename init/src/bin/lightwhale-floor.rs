//! The benchmark floor: the same kernel and squashfs, booted by the least an init can do
//! to run Docker. It loads loop and squashfs, mounts the image (no checksum), switches
//! root, mounts the few writable places dockerd and containerd need, starts both, and
//! prints `floor: docker ready` once `docker info` answers. No drivers, no persistence,
//! no network, no login. `cargo xtask bench` compares Lightwhale's boot against it.

use lightwhale_init::{boot::stage1, fs::mounts, logging::console};
use nix::mount::MsFlags;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run() -> Result<(), String> {
    stage1::mount_kernel_filesystems().map_err(|e| e.to_string())?;
    console::init(false);
    log::info!("init started: floor");
    stage1::load_initramfs_modules().map_err(|e| e.to_string())?;
    stage1::mount_image().map_err(|e| e.to_string())?;
    stage1::switch_root(Path::new(stage1::NEW_ROOT)).map_err(|e| e.to_string())?;
    for dir in ["/tmp", "/var/lib", "/var/log", "/mnt/lightwhale-data"] {
        mounts::fs("tmpfs", Path::new(dir), "tmpfs", MsFlags::empty(), Some("mode=0755")).map_err(|e| e.to_string())?;
    }
    mounts::fs("cgroup2", Path::new("/sys/fs/cgroup"), "cgroup2", MsFlags::empty(), None).map_err(|e| e.to_string())?;
    let spawn = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .env("PATH", "/usr/sbin:/usr/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", argv[0]))
    };
    spawn(&["/usr/bin/containerd"])?;
    spawn(&["/usr/sbin/dockerd", "--containerd=/run/containerd/containerd.sock"])?;
    loop {
        let ok = Command::new("/usr/bin/docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            log::info!("floor: docker ready at {:.2} s", console::uptime());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("lightwhale-floor is a benchmark init; it only runs as PID 1 (see cargo xtask bench)");
        std::process::exit(2);
    }
    if let Err(e) = run() {
        log::error!("floor: {e}");
    }
    loop {
        // Reap and idle: PID 1 must not exit.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(-1), None);
        std::thread::sleep(Duration::from_secs(1));
    }
}
