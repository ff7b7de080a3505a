//! Hardening, checked on a running system in one boot: every service's sandbox as the
//! kernel reports it, lockdown, the sysctls, Docker's own confinement (seccomp, AppArmor
//! docker-default), a container that tries to load the DCCP module or use bpf(), the
//! setuid files left, sshd's settings, and the default-password warning. The same boot has
//! two hostile disks attached: one with a forged ext4 superblock (label right, the rest
//! random) and one with a GPT that claims more disk than there is; the init must not crash
//! and must boot with RAM persistence, saying why.

use lightwhale_init::config::{self, InitConfig};
use lightwhale_init::kernel::sysctl;
use lightwhale_init::persist::{ext4, gpt, LABEL};
use lightwhale_types::{cmdline, password};
use lightwhale_vm_tests::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn host_err(e: impl std::fmt::Display) -> VmError {
    VmError::Host(e.to_string())
}

/// Deterministic bytes (xorshift), so a failure can be reproduced.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A whole disk whose superblock carries the persistence label and the ext4 magic, with
/// every other byte random.
fn forged_superblock_disk(path: &Path) -> Result<(), VmError> {
    let mut head = noise(0x5eed, 4 * MIB as usize);
    let sb = ext4::craft(LABEL, [0; 16], 1, 0, 0);
    let o = ext4::SUPERBLOCK_OFFSET;
    head[o + 0x38..o + 0x3A].copy_from_slice(&sb[o + 0x38..o + 0x3A]);
    head[o + 0x78..o + 0x88].copy_from_slice(&sb[o + 0x78..o + 0x88]);
    assert_eq!(ext4::parse(&head).map(|s| s.label), Some(LABEL.to_string()));
    host::blank_disk(path, 128 * MIB)?;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(host_err)?;
    f.write_all_at(&head, 0).map_err(host_err)
}

/// A GPT written for a 4 GiB disk on a 64 MiB one: its partition and backup table lie
/// beyond the end.
fn truncated_gpt_disk(path: &Path) -> Result<(), VmError> {
    let layout = gpt::layout(4096 * MIB, 512, &[0u8; 512], [3; 16], [4; 16]).map_err(host_err)?;
    host::blank_disk(path, 64 * MIB)?;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(host_err)?;
    for w in layout.writes.iter().filter(|w| w.offset < 64 * MIB) {
        f.write_all_at(&w.data, w.offset).map_err(host_err)?;
    }
    Ok(())
}

/// The static `lightwhale-tryout` (built with the init by `cargo xtask iso`) as a raw disk,
/// the only way into the guest for a binary: no network to the host, no registry.
fn tryout_disk(path: &Path) -> Result<u64, VmError> {
    let bin = repo().join("target/init/x86_64-unknown-linux-gnu/release/lightwhale-tryout");
    let data = std::fs::read(&bin)
        .map_err(|e| VmError::Setup(format!("{}: {e} (run `cargo xtask iso`, which builds it)", bin.display())))?;
    host::blank_disk(path, MIB.max((data.len() as u64).div_ceil(MIB) * MIB))?;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(host_err)?;
    f.write_all_at(&data, 0).map_err(host_err)?;
    Ok(data.len() as u64)
}

fn status_field(status: &str, key: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap_or_default().trim().to_string()
}

/// Each service's pid, from the init's "service X: started (pid N; ...)" lines.
fn service_pids(m: &mut Machine, cfg: &InitConfig) -> Result<Vec<(String, u32)>, VmError> {
    let log = m.sudo("dmesg", MIN)?;
    let mut out = Vec::new();
    for s in &cfg.services {
        // A service for something not configured on this machine (Wi-Fi, Compose apps)
        // never starts here.
        if let Some(path) = &s.only_if_exists {
            if m.execute(&format!("test -e {path}"), MIN)?.code != 0 {
                println!("  {:<12} not configured here ({path} does not exist)", s.name);
                continue;
            }
        }
        // The latest start: "started (pid N; ...)" or "started again (pid N)".
        let marker = format!("service {}: started", s.name);
        let pid = log
            .lines()
            .rev()
            .filter_map(|l| l.split_once(&marker).and_then(|(_, r)| r.split_once("pid ")).map(|(_, r)| r))
            .find_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .ok_or_else(|| VmError::Setup(format!("no start of {} in dmesg", s.name)))?;
        out.push((s.name.clone(), pid));
    }
    Ok(out)
}

fn check_services(m: &mut Machine, cfg: &InitConfig) -> Result<(), VmError> {
    let last_cap: u8 = m.succeed("cat /proc/sys/kernel/cap_last_cap", MIN)?.trim().parse().map_err(host_err)?;
    println!("SANDBOXES (as /proc/<pid>/status shows them):");
    for (name, pid) in service_pids(m, cfg)? {
        let svc = cfg.services.iter().find(|s| s.name == name).expect("listed");
        let st = m.sudo(&format!("cat /proc/{pid}/status"), MIN)?;
        let (bnd, nnp, sec) =
            (status_field(&st, "CapBnd"), status_field(&st, "NoNewPrivs"), status_field(&st, "Seccomp"));
        println!(
            "  {name:<12} pid {pid:<5} CapBnd {bnd}  NoNewPrivs {nnp}  Seccomp {sec}  ({})",
            status_field(&st, "Name")
        );
        assert_eq!(bnd, format!("{:016x}", svc.sandbox.expected_cap_bnd(last_cap)), "{name}: CapBnd\n{st}");
        assert_eq!(nnp, if svc.sandbox.no_new_privs { "1" } else { "0" }, "{name}: NoNewPrivs");
        assert_eq!(sec, if svc.sandbox.seccomp.is_some() { "2" } else { "0" }, "{name}: Seccomp");
    }
    // No service starts with PID 1's blocked signals (the init reads them from a
    // signalfd): chronyd, which leaves its mask alone, must see SIGTERM, and so must the
    // console's login shell and what it runs.
    let chronyd = m.sudo("grep SigBlk /proc/$(pgrep -xo chronyd)/status", MIN)?;
    assert_eq!(status_field(&chronyd, "SigBlk"), "0000000000000000", "chronyd's blocked signals");
    let shell_blocked =
        u64::from_str_radix(&status_field(&m.succeed("cat /proc/$$/status", MIN)?, "SigBlk"), 16).map_err(host_err)?;
    assert_eq!(shell_blocked & (1 << (libc::SIGTERM - 1)), 0, "the login shell has SIGTERM blocked");
    // The shell this test logged into inherited the console getty's sandbox, and sudo
    // still works in it (the login itself ran `sudo dmesg -n 1`).
    let me = m.succeed("cat /proc/$$/status", MIN)?;
    let getty = cfg.services.iter().find(|s| s.name == "getty-ttyS0").expect("getty");
    assert_eq!(status_field(&me, "CapBnd"), format!("{:016x}", getty.sandbox.expected_cap_bnd(last_cap)));
    assert_eq!((status_field(&me, "NoNewPrivs").as_str(), status_field(&me, "Seccomp").as_str()), ("0", "2"));
    assert_eq!(m.sudo("id -u", MIN)?.trim(), "0");
    Ok(())
}

fn check_kernel(m: &mut Machine) -> Result<(), VmError> {
    let lockdown = m.succeed("cat /sys/kernel/security/lockdown", MIN)?;
    assert!(lockdown.contains("[integrity]"), "{lockdown}");
    let cmdline = m.succeed("cat /proc/cmdline", MIN)?;
    for o in cmdline::KSPP_OPTIONS {
        assert!(cmdline.split_whitespace().any(|w| w == *o), "{o} not on the kernel command line: {cmdline}");
    }
    // Modules still load under lockdown (they are signed): ext4 and overlay did, at boot.
    let modules = m.succeed("cat /proc/modules", MIN)?;
    assert!(modules.contains("ext4 ") && modules.contains("overlay "), "{modules}");
    let text = std::fs::read_to_string(repo().join("modules/base/rootfs/usr/lib/sysctl.d/50-lightwhale.conf"))
        .map_err(host_err)?;
    // Some are readable by root only (net.core.bpf_jit_harden): one sudo for all.
    let wanted = sysctl::parse(&text);
    let paths: Vec<String> = wanted.iter().map(|(k, _)| sysctl::proc_path(k).display().to_string()).collect();
    let have = m.sudo(&format!("for f in {}; do echo \"$(cat $f)\"; done", paths.join(" ")), MIN)?;
    let have: Vec<&str> = have.lines().collect();
    assert_eq!(have.len(), wanted.len(), "{have:?}");
    for ((key, want), have) in wanted.iter().zip(have) {
        let (have, want): (Vec<&str>, Vec<&str>) =
            (have.split_whitespace().collect(), want.split_whitespace().collect());
        assert_eq!(have, want, "sysctl {key}");
    }
    m.fail("test -n \"$(ls -A /sys/kernel/debug 2>/dev/null)\"", MIN)?;
    let out = m.execute("printf '%s\\n' opsecret | sudo -S -p '' mount -t debugfs none /mnt 2>&1", MIN)?;
    assert_ne!(out.code, 0, "debugfs mounted: {}", out.text);
    Ok(())
}

fn check_docker(m: &mut Machine, tryout_len: u64) -> Result<(), VmError> {
    let opts = m.wait_until_succeeds("d info --format '{{json .SecurityOptions}}'", 5 * MIN)?;
    assert!(opts.contains("name=apparmor") && opts.contains("name=seccomp"), "{opts}");
    // The tryout binary from its disk (the one that starts with an ELF header).
    m.sudo(
        &format!(
            "for d in /dev/vd?; do if [ \"$(head -c 4 $d | tail -c 3)\" = ELF ]; then head -c {tryout_len} $d > /tmp/img/tryout; fi; done; chmod 755 /tmp/img/tryout; test -s /tmp/img/tryout"
        ),
        MIN,
    )?;
    m.succeed("cp /usr/bin/busybox /tmp/img/ && tar -C /tmp/img -c busybox tryout | d import - lw/bb", 3 * MIN)?;
    let profile = m.succeed("d run --rm lw/bb /busybox cat /proc/self/attr/current", 3 * MIN)?;
    assert_eq!(profile.trim(), "docker-default (enforce)", "a default container is not under docker-default");
    // A DCCP socket asks the kernel for the dccp module; it is neither loadable nor there.
    let dccp = m.execute("d run --rm lw/bb /tryout socket 2 6 33", 3 * MIN)?;
    assert!(dccp.code != 0 && dccp.text.contains("errno"), "socket(AF_INET, SOCK_DCCP) in a container: {}", dccp.text);
    assert!(!m.succeed("cat /proc/modules", MIN)?.contains("dccp"), "the dccp module was loaded");
    m.fail("printf '%s\\n' opsecret | sudo -S -p '' modprobe dccp", MIN)?;
    // And bpf() in a container: Docker's seccomp profile.
    let bpf = m.execute("d run --rm lw/bb /tryout bpf", 3 * MIN)?;
    assert!(bpf.text.contains(&format!("errno {}", libc::EPERM)), "bpf() in a container: {}", bpf.text);
    println!(
        "CONTAINER: AppArmor {profile:?}; socket(AF_INET, SOCK_DCCP): {}; bpf(): {}",
        dccp.text.trim(),
        bpf.text.trim()
    );
    Ok(())
}

fn check_surface(m: &mut Machine) -> Result<(), VmError> {
    let setuid = m.sudo("find / -xdev -type f -perm /6000", 3 * MIN)?;
    assert_eq!(setuid.split_whitespace().collect::<Vec<_>>(), vec!["/usr/bin/sudo"], "setuid/setgid files: {setuid}");
    let sshd = m.sudo("sshd -T", MIN)?;
    assert!(sshd.contains("x11forwarding no"), "{sshd}");
    assert!(sshd.contains("banner /run/lightwhale/ssh-banner"), "{sshd}");
    let left = m.succeed(
        "find /lib/modules/$(uname -r) -name 'dccp*' -o -name 'sctp*' -o -name 'l2tp*' -o -name 'af_key*' -o -name 'appletalk*' -o -name 'n_hdlc*'",
        MIN,
    )?;
    assert_eq!(left.trim(), "", "rare protocol modules left in the image");
    Ok(())
}

fn check_password_warning(m: &mut Machine, around_login: &str) -> Result<(), VmError> {
    // At the login prompt (/etc/issue.d) and after the password (the motd). The screen
    // text goes on with a comma; the init's log line (also on the console) with a semicolon.
    let screen = format!("{},", password::WARNING_HEAD);
    let (prompt, after) = around_login.split_once("Password: ").unwrap_or((around_login, ""));
    assert!(prompt.contains(&screen), "no warning at the login prompt:\n{prompt}");
    assert!(after.contains(&screen), "no warning in the motd:\n{after}");
    assert!(after.contains(password::CHANGE_COMMAND));
    let banner = m.succeed("cat /run/lightwhale/ssh-banner", MIN)?;
    assert!(banner.contains(password::WARNING_HEAD), "{banner}");
    // Changed: within the init's half-minute check, every warning is gone.
    m.sudo("echo op:a-better-secret | chpasswd", MIN)?;
    let files = "/run/lightwhale/ssh-banner /run/lightwhale/password.issue /run/motd.d/lightwhale-password";
    m.wait_until_succeeds(
        &format!("for f in {files}; do test -e $f || exit 2; done; ! grep -q WARNING {files}"),
        2 * MIN,
    )?;
    Ok(())
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn hardening() -> Result<(), VmError> {
    let a = artifacts()?;
    let cfg = config::load(&repo().join("modules")).map_err(host_err)?;
    let dir = work_dir().join("hardening-disks");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(host_err)?;
    let (forged, truncated, tryout) =
        (dir.join("forged-sb.img"), dir.join("truncated-gpt.img"), dir.join("tryout.img"));
    forged_superblock_disk(&forged)?;
    truncated_gpt_disk(&truncated)?;
    let tryout_len = tryout_disk(&tryout)?;
    let forged_before = host::sha256_of(&forged)?;

    let mut c = Config::new(a.kernel_boot("")?);
    c.forwards.clear();
    c.disks = vec![
        Disk { path: forged.clone(), iface: Iface::Ide, snapshot: false },
        Disk { path: truncated.clone(), iface: Iface::Virtio, snapshot: false },
        Disk { path: tryout.clone(), iface: Iface::Virtio, snapshot: true },
    ];
    let mut m = Machine::start("hardening", c)?;
    // The forged disk is chosen by its label, cannot be used, and the boot goes on in RAM.
    let failed = m.wait_for_console_line("COULD NOT BE MOUNTED", 5 * MIN)?;
    assert!(failed.contains("sda"), "{failed}");
    m.wait_for_console_text("Booting with RAM-only persistence", MIN)?;
    let mark = m.console.mark();
    m.login("op", "opsecret", 5 * MIN)?;
    let around_login = m.console.text_since(mark);
    let st = m.status()?;
    assert_eq!(st["persistence"]["mode"], "failed", "{st:#}");
    assert_eq!(st["persistence"]["device"], "sda", "{st:#}");
    assert!(!m.sudo("dmesg", MIN)?.contains("panicked"), "the init panicked");

    // chronyd, the last service, starts once Docker answers.
    m.wait_until_succeeds("pgrep -x chronyd", 3 * MIN)?;
    check_services(&mut m, &cfg)?;
    check_kernel(&mut m)?;
    check_surface(&mut m)?;
    m.succeed("mkdir -p /tmp/img", MIN)?;
    check_docker(&mut m, tryout_len)?;
    check_password_warning(&mut m, &around_login)?;
    m.crash();
    assert_eq!(host::sha256_of(&forged)?, forged_before, "the disk with the forged superblock was written");
    Ok(())
}
