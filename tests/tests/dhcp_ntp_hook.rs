//! The timesync module's dhcpcd hook: NTP servers from a DHCP lease become a chrony
//! sources file for that interface, and go away with the lease. Runs the real hook file
//! the way dhcpcd-run-hooks does (sourced by sh, with dhcpcd's variables).

use std::path::{Path, PathBuf};
use std::process::Command;

fn hook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/timesync/rootfs/etc/dhcpcd.exit-hook")
}

fn run(dir: &Path, vars: &[(&str, &str)]) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(". {}", hook().display())).env("LIGHTWHALE_CHRONY_DHCP_DIR", dir);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn lease_servers_become_chrony_sources_and_leave_with_the_lease() {
    let dir = std::env::temp_dir().join(format!("lw-ntp-hook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(&dir, &[("reason", "BOUND"), ("interface", "eth0"), ("new_ntp_servers", "192.0.2.1 192.0.2.2")]);
    assert_eq!(
        std::fs::read_to_string(dir.join("eth0.sources")).unwrap(),
        "server 192.0.2.1 iburst\nserver 192.0.2.2 iburst\n"
    );
    run(&dir, &[("reason", "BOUND6"), ("interface", "eth0"), ("new_dhcp6_sntp_servers", "2001:db8::1")]);
    assert_eq!(std::fs::read_to_string(dir.join("eth0-6.sources")).unwrap(), "server 2001:db8::1 iburst\n");
    // A renewal without servers leaves an empty file: the lease no longer names any.
    run(&dir, &[("reason", "RENEW"), ("interface", "eth0")]);
    assert_eq!(std::fs::read_to_string(dir.join("eth0.sources")).unwrap(), "");
    run(&dir, &[("reason", "RELEASE"), ("interface", "eth0")]);
    assert!(!dir.join("eth0.sources").exists());
    assert!(dir.join("eth0-6.sources").exists(), "an IPv4 event must not touch the IPv6 servers");
    // Events that are not about leases change nothing.
    run(&dir, &[("reason", "PREINIT"), ("interface", "eth1"), ("new_ntp_servers", "192.0.2.9")]);
    assert!(!dir.join("eth1.sources").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
