//! Children under every shipped seccomp profile and under the device probe's sandbox try
//! to break out: open a file for writing, create a file in /tmp, mount, ptrace, open a
//! socket, execve and bpf(). Each attempt a sandbox forbids must fail with the expected
//! errno, and each child must still do its real job. The sandboxes are the real ones: the
//! shipped modules' init.ron and seccomp profiles, applied by the init's own `sandbox::apply`
//! (what the supervisor's pre_exec runs). Needs root: `cargo xtask test` runs these.

use lightwhale_init::config::{self, Service};
use lightwhale_init::persist::{decide, ext4, header, scan};
use lightwhale_init::sandbox::seccomp::{self, Mode};
use lightwhale_init::sandbox::{self, Sandbox};
use lightwhale_init::service::spawn;
use std::path::{Path, PathBuf};
use std::time::Duration;

const EPERM: i32 = libc::EPERM;
const EACCES: i32 = libc::EACCES;

fn modules() -> config::InitConfig {
    config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules")).expect("shipped configuration")
}

fn service(cfg: &config::InitConfig, name: &str) -> Service {
    cfg.services.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no service {name}")).clone()
}

fn compiled(cfg: &config::InitConfig, svc: &Service) -> Option<seccomp::Compiled> {
    svc.sandbox.seccomp.as_ref().map(|n| seccomp::compile(&cfg.seccomp[n], Mode::Enforce).unwrap())
}

/// A scratch directory with a file to attack and an empty mount point.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("lw-breakout-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("mnt")).unwrap();
        std::fs::write(d.join("target"), "precious\n").unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0.join("mnt"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn errno<T>(r: nix::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e as i32,
    }
}

fn raw(r: libc::c_long) -> i32 {
    if r >= 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// Every attempt, as (what, errno or 0); run inside the sandbox.
fn attempts(scratch: &Path) -> Vec<(String, i32)> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode as M;
    let mut out = Vec::new();
    let mut note = |what: &str, e: i32| out.push((what.to_string(), e));
    note("open for writing", errno(open(&scratch.join("target"), OFlag::O_WRONLY, M::empty())));
    let fresh = std::env::temp_dir().join(format!("lw-breakout-new-{}", std::process::id()));
    note(
        "create in /tmp",
        errno(open(&fresh, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, M::from_bits_truncate(0o600))),
    );
    let _ = std::fs::remove_file(&fresh);
    // A private mount namespace first, so a mount that is allowed stays in this child.
    let private = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).and_then(|_| {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
    });
    let mount = nix::mount::mount(
        Some("none"),
        &scratch.join("mnt"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    note("mount", if private.is_err() && mount.is_ok() { -1 } else { errno(mount) });
    // A pid that does not exist: ESRCH if ptrace may be called at all, EPERM if not.
    // SAFETY: ptrace with integer arguments.
    note("ptrace", raw(unsafe { libc::ptrace(libc::PTRACE_ATTACH, 0x3fff_fff0 as libc::pid_t, 0, 0) }));
    // SAFETY: socket with integer arguments; closed at exit.
    note("socket AF_ALG", raw(unsafe { libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET, 0) } as libc::c_long));
    // A program that does not exist: ENOENT if execve may be called, EPERM if not.
    let prog = std::ffi::CString::new("/nonexistent/lightwhale-breakout").unwrap();
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: valid NUL-terminated argv and envp; returns only on failure.
    note("execve", raw(unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) } as libc::c_long));
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: attr is a valid bpf_attr buffer.
    note("bpf", raw(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), std::mem::size_of_val(&attr)) }));
    // SAFETY: kexec_load with no segments only checks permissions.
    note("kexec_load", raw(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0) }));
    out
}

/// The CapBnd a child of this test shows: the profile's set within the test's own.
fn expected_cap_bnd(svc: &Service) -> String {
    let own = u64::from_str_radix(&status_field("CapBnd"), 16).unwrap_or(u64::MAX);
    format!("{:016x}", svc.sandbox.expected_cap_bnd(sandbox::last_cap()) & own)
}

fn status_field(name: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap_or_default().trim().to_string()
}

/// One fork at a time: the tests of this file run on threads of one process, and a child
/// forked while another test's child is being set up must not inherit a held lock.
static FORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_in(
    sb: &Sandbox,
    scratch: &Path,
    job: impl FnOnce() -> Result<String, String>,
) -> (Vec<(String, i32)>, String, [String; 3]) {
    let scratch = scratch.to_path_buf();
    let _one = FORK.lock().unwrap_or_else(|e| e.into_inner());
    sandbox::run("breakout", sb, Duration::from_secs(30), move || {
        let status = [status_field("CapBnd"), status_field("NoNewPrivs"), status_field("Seccomp")];
        let job = job()?;
        Ok((attempts(&scratch), job, status))
    })
    .expect("the sandboxed child answered")
}

fn get(results: &[(String, i32)], what: &str) -> i32 {
    results.iter().find(|(w, _)| w == what).map(|(_, e)| *e).unwrap_or_else(|| panic!("no attempt {what}"))
}

fn expect(results: &[(String, i32)], want: &[(&str, i32)], who: &str) {
    for (what, e) in want {
        assert_eq!(
            get(results, what),
            *e,
            "{who}: {what} gave errno {} (want {e}); all: {results:?}",
            get(results, what)
        );
    }
}

#[test]
#[ignore = "needs root (capabilities, Landlock, seccomp, mount): run with `cargo xtask test`"]
fn without_a_sandbox_every_attempt_gets_through() {
    // The control: the same attempts as root with no sandbox succeed, so the denials
    // below come from the sandboxes and not from the test machine.
    let s = Scratch::new("control");
    let (r, _, status) = run_in(&Sandbox::default(), &s.0, || Ok(String::new()));
    expect(
        &r,
        &[
            ("open for writing", 0),
            ("create in /tmp", 0),
            ("mount", 0),
            ("ptrace", libc::ESRCH),
            ("execve", libc::ENOENT),
        ],
        "no sandbox",
    );
    assert_ne!(get(&r, "bpf"), EPERM, "bpf() is denied on this machine even without a sandbox: {r:?}");
    assert_eq!(status[2], "0");
}

#[test]
#[ignore = "needs root (capabilities, Landlock, seccomp): run with `cargo xtask test`"]
fn probe_child_is_denied_everything_and_still_reads_a_crafted_disk() {
    assert!(sandbox::landlock_abi() > 0, "this test needs a kernel with Landlock");
    let s = Scratch::new("probe");
    let dev = s.0.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let mut disk = ext4::craft(decide::LABEL, [7; 16], 1, 0, 1_700_000_000);
    disk.resize(header::PROBE_LEN, 0);
    std::fs::write(dev.join("vdz"), &disk).unwrap();
    // The probe's sandbox as persist::ready builds it, with /proc readable too so the child can
    // report its own status (the real probe reads only /dev and /sys).
    let sb = sandbox::probe_sandbox(&[dev.to_str().unwrap(), "/proc"]).unwrap();
    let devdir = dev.clone();
    let (r, job, status) = run_in(&sb, &s.0, move || {
        let d = scan::BlockDev { name: "vdz".into(), size_bytes: 1 << 30, ..Default::default() };
        let report = scan::probe(&devdir, &d);
        let label = report.ext4.map(|sb| sb.label).unwrap_or_default();
        Ok(format!("{label}/{}", report.magic))
    });
    assert_eq!(job, "lightwhale-data/false", "the probe did not read the crafted disk");
    expect(
        &r,
        &[
            ("open for writing", EACCES),
            ("create in /tmp", EACCES),
            ("mount", EPERM),
            ("ptrace", EPERM),
            ("socket AF_ALG", EPERM),
            ("execve", EPERM),
            ("bpf", EPERM),
            ("kexec_load", EPERM),
        ],
        "probe",
    );
    assert_eq!(status, ["0000000000000000".to_string(), "1".into(), "2".into()]);
    assert_eq!(std::fs::read_to_string(s.0.join("target")).unwrap(), "precious\n");
}

#[test]
#[ignore = "needs root (capabilities, Landlock, seccomp): run with `cargo xtask test`"]
fn probe_answer_over_the_limit_is_rejected() {
    let sb = sandbox::probe_sandbox(&["/sys"]).unwrap();
    let _one = FORK.lock().unwrap_or_else(|e| e.into_inner());
    let r: Result<String, _> =
        sandbox::run("oversized", &sb, Duration::from_secs(30), || Ok("x".repeat(sandbox::MAX_ANSWER)));
    assert!(matches!(r, Err(sandbox::SandboxError::TooLarge { .. })), "{r:?}");
}

#[test]
#[ignore = "needs root (capabilities, Landlock, seccomp): run with `cargo xtask test`"]
fn dhcpcd_sandbox_denies_and_still_talks_netlink_and_writes_its_state() {
    assert!(sandbox::landlock_abi() > 0, "this test needs a kernel with Landlock");
    let cfg = modules();
    let svc = service(&cfg, "dhcpcd");
    let mut sb = spawn::service_sandbox(&svc, compiled(&cfg, &svc).as_ref()).unwrap();
    // Its read-write paths, moved under a scratch root so the host's are not touched.
    let s = Scratch::new("dhcpcd");
    let state = s.0.join("var/lib/dhcpcd");
    std::fs::create_dir_all(&state).unwrap();
    let l = sb.landlock.as_mut().unwrap();
    assert!(l.read_write.iter().any(|p| p == Path::new("/var/lib/dhcpcd")));
    l.read_write = vec![state.clone()];
    let expected_bnd = expected_cap_bnd(&svc);
    let (r, job, status) = run_in(&sb, &s.0, move || {
        std::fs::write(state.join("eth0.lease"), "lease").map_err(|e| format!("writing its lease: {e}"))?;
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc: {e}"))?;
        netlink_link_dump()
    });
    assert!(job.starts_with("netlink:"), "{job}");
    expect(
        &r,
        &[
            ("open for writing", EACCES),
            ("create in /tmp", EACCES),
            ("mount", EPERM),
            ("ptrace", EPERM),
            ("socket AF_ALG", EPERM),
            // dhcpcd runs its hook scripts: execve is allowed (Landlock limits what).
            ("execve", libc::ENOENT),
            ("bpf", EPERM),
            ("kexec_load", EPERM),
        ],
        "dhcpcd",
    );
    assert_eq!(status, [expected_bnd, "1".into(), "2".into()]);
}

#[test]
#[ignore = "needs root (capabilities, Landlock, seccomp): run with `cargo xtask test`"]
fn chronyd_sandbox_denies_and_still_reads_the_clock_and_writes_its_drift() {
    assert!(sandbox::landlock_abi() > 0, "this test needs a kernel with Landlock");
    let cfg = modules();
    let svc = service(&cfg, "chronyd");
    let mut sb = spawn::service_sandbox(&svc, compiled(&cfg, &svc).as_ref()).unwrap();
    let s = Scratch::new("chronyd");
    let state = s.0.join("var/lib/chrony");
    std::fs::create_dir_all(&state).unwrap();
    let l = sb.landlock.as_mut().unwrap();
    assert!(l.read_write.iter().any(|p| p == Path::new("/var/lib/chrony")));
    l.read_write = vec![state.clone()];
    let expected_bnd = expected_cap_bnd(&svc);
    let (r, job, status) = run_in(&sb, &s.0, move || {
        std::fs::write(state.join("chrony.drift"), "1.0 0.1\n").map_err(|e| format!("writing its drift: {e}"))?;
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc: {e}"))?;
        // Reading the kernel's clock state (modes 0) is what chronyd does at every update.
        // SAFETY: tx is a valid, zeroed timex.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        if unsafe { libc::adjtimex(&mut tx) } < 0 {
            return Err(format!("adjtimex: {}", std::io::Error::last_os_error()));
        }
        // An NTP client socket.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp socket: {e}"))?;
        Ok(format!("clock status {} socket {}", tx.status, sock.local_addr().is_ok()))
    });
    assert!(job.starts_with("clock status") && job.ends_with("socket true"), "{job}");
    expect(
        &r,
        &[
            ("open for writing", EACCES),
            ("create in /tmp", EACCES),
            ("mount", EPERM),
            ("ptrace", EPERM),
            ("socket AF_ALG", EPERM),
            // The filter goes on before the exec: execve must pass (Landlock limits what).
            ("execve", libc::ENOENT),
            ("bpf", EPERM),
            ("kexec_load", EPERM),
        ],
        "chronyd",
    );
    assert_eq!(status, [expected_bnd, "1".into(), "2".into()]);
}

/// dhcpcd's first job: ask the kernel for its interfaces over NETLINK_ROUTE.
fn netlink_link_dump() -> Result<String, String> {
    // SAFETY: socket with integer arguments.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(format!("netlink socket: {}", std::io::Error::last_os_error()));
    }
    // struct nlmsghdr (16) + struct ifinfomsg (16): RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP.
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&(libc::RTM_GETLINK).to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: fd is a socket, req a valid buffer; send to the kernel (pid 0) by default.
    if unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
    }
    let mut buf = [0u8; 8192];
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 16 {
        return Err(format!("netlink recv: {n}: {}", std::io::Error::last_os_error()));
    }
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    if ty != libc::RTM_NEWLINK {
        return Err(format!("netlink answered type {ty}"));
    }
    Ok(format!("netlink: {n} bytes of links"))
}

#[test]
#[ignore = "needs root (capabilities, seccomp, mount): run with `cargo xtask test`"]
fn admin_sandbox_keeps_administration_and_denies_its_list() {
    let cfg = modules();
    let gettys: Vec<Service> = ["getty-ttyS0", "getty-tty1", "sshd"].iter().map(|n| service(&cfg, n)).collect();
    for g in &gettys[1..] {
        assert_eq!(
            g.sandbox, gettys[0].sandbox,
            "{} and getty-ttyS0 differ: the administrator's sandbox must be one",
            g.name
        );
    }
    let svc = &gettys[0];
    let sb = spawn::service_sandbox(svc, compiled(&cfg, svc).as_ref()).unwrap();
    let s = Scratch::new("admin");
    let expected_bnd = expected_cap_bnd(svc);
    let own_nnp = status_field("NoNewPrivs");
    let (r, _, status) = run_in(&sb, &s.0, || Ok(String::new()));
    expect(
        &r,
        &[
            // What administration needs stays.
            ("open for writing", 0),
            ("create in /tmp", 0),
            ("mount", 0),
            ("ptrace", libc::ESRCH),
            ("execve", libc::ENOENT),
            // The deny-list.
            ("bpf", EPERM),
            ("kexec_load", EPERM),
        ],
        "admin",
    );
    assert_ne!(get(&r, "socket AF_ALG"), EPERM);
    // No no_new_privs (the test's own state passes through): sudo must keep working.
    assert_eq!(status, [expected_bnd, own_nnp, "2".into()]);
}

#[test]
#[ignore = "needs root (seccomp): run with `cargo xtask test`"]
fn every_shipped_profile_denies_bpf_even_in_log_mode() {
    let cfg = modules();
    assert!(!cfg.seccomp.is_empty());
    for (name, p) in &cfg.seccomp {
        let c = seccomp::compile(p, Mode::Log).unwrap();
        let sb = Sandbox { no_new_privs: true, seccomp: Some(c), ..Sandbox::default() };
        let s = Scratch::new(&format!("bpf-{name}"));
        let (r, _, _) = run_in(&sb, &s.0, || Ok(String::new()));
        assert_eq!(get(&r, "bpf"), EPERM, "profile {name}: {r:?}");
    }
}

#[test]
#[ignore = "needs root (Landlock and seccomp without no_new_privs need CAP_SYS_ADMIN): run with `cargo xtask test`"]
fn no_new_privs_is_set_only_when_the_sandbox_asks() {
    // seccompiler's apply_filter and the landlock crate both set no_new_privs on their own
    // by default; under the administrator's sandbox that would break sudo.
    let s = Scratch::new("nnp");
    let own = status_field("NoNewPrivs");
    let sb = Sandbox {
        landlock: Some(sandbox::Landlock { read_only: vec!["/".into()], ..Default::default() }),
        seccomp: Some(seccomp::compile(&modules().seccomp["admin"], Mode::Enforce).unwrap()),
        ..Sandbox::default()
    };
    let (r, _, status) = run_in(&sb, &s.0, || Ok(String::new()));
    assert_eq!(get(&r, "open for writing"), EACCES, "Landlock was not applied: {r:?}");
    assert_eq!(status[1], own, "no_new_privs changed although the sandbox did not ask for it");
    assert_eq!(status[2], "2");
}
