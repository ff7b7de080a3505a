//! Day-30 operations: the clock when the hardware clock is behind, time sync state in
//! `lightwhale status`, per-machine host names, and data written without `sync` before a
//! reboot.

use lightwhale_vm_tests::host;
use lightwhale_vm_tests::*;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

fn hostname(m: &mut Machine) -> Result<String, VmError> {
    Ok(m.succeed("hostname", MIN)?.trim().to_string())
}

/// Boots a machine on a fresh persistence disk, returns it logged in.
fn machine_with_disk(name: &str, disk: &std::path::Path, rtc_base: Option<&str>) -> Result<Machine, VmError> {
    let a = artifacts()?;
    host::magic_disk(disk, 700 * MIB)?;
    let mut config = Config::new(Boot::IsoAsDisk(a.iso, Iface::Virtio));
    config.disks = vec![Disk { path: disk.to_path_buf(), iface: Iface::Ide, snapshot: false }];
    config.forwards.clear();
    config.rtc_base = rtc_base.map(str::to_string);
    let mut m = Machine::start(name, config)?;
    m.login("op", "opsecret", 5 * MIN)?;
    Ok(m)
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn clock_host_names_and_a_reboot_without_sync() -> Result<(), VmError> {
    let dir = fresh_dir("operations-disks")?;

    // The hardware clock is years behind the image's build date.
    let mut m = machine_with_disk("operations", &dir.join("a.img"), Some("2001-01-01"))?;
    let boot = m.console.text_since(0);
    let set = boot.find("clock: the hardware clock said 2001-01-01").expect("the clock was not set forward");
    let dockerd = boot.find("service dockerd: started").unwrap_or(usize::MAX);
    assert!(set < dockerd, "the clock was set forward after dockerd started:\n{boot}");
    // chronyd starts once Docker answers; status reads its state from it.
    m.wait_until_succeeds("chronyc -c tracking", 3 * MIN)?;
    let st = m.status()?;
    let build_date = st["build_date"].as_u64().unwrap();
    // The login prompt names the product and its version; the motd after login sums up
    // the system and its warnings.
    let version = st["version"].as_str().unwrap().to_string();
    assert!(boot.contains(&format!("Lightwhale {version} on lightwhale-")), "no version at the login prompt:\n{boot}");
    let after_login = m.console.text_since(0);
    assert!(
        after_login.contains("persistence: /dev/sda1") && after_login.contains("More: lightwhale status"),
        "{after_login}"
    );
    assert!(after_login.contains("the password of op is still the default"), "{after_login}");
    let now: u64 = m.succeed("date +%s", MIN)?.trim().parse().unwrap();
    assert!(now >= build_date, "clock {now} is before the build date {build_date}");
    // No NTP server is reachable here: status says so, and warns.
    assert_eq!(st["time"]["synchronised"], false, "{st:#}");
    assert!(m.succeed("lightwhale status", MIN)?.contains("not synchronised"));
    assert!(st["warnings"].to_string().contains("clock is not synchronised"), "{st:#}");

    // A name of its own, from the machine id, that sudo can resolve.
    let name_a = hostname(&mut m)?;
    let machine_id = m.succeed("cat /etc/machine-id", MIN)?;
    assert_eq!(name_a, format!("lightwhale-{}", &machine_id.trim()[..6]));
    assert!(m.succeed("cat /etc/hosts", MIN)?.contains(&name_a));
    let out = m.sudo("true 2>&1", MIN)?;
    assert!(!out.contains("unable to resolve host"), "{out}");

    // Written without sync, then a clean reboot: everything is there, and the journal
    // needed no recovery.
    m.succeed("echo kept > ~/unsynced.txt", MIN)?;
    m.wait_until_succeeds("d info", 5 * MIN)?;
    m.import_busybox_image("lw/bb")?;
    m.succeed("d volume create data && d run --rm -v data:/data lw/bb sh -c 'echo in-volume > /data/f'", 3 * MIN)?;
    m.reboot()?;
    m.login("op", "opsecret", 5 * MIN)?;
    let second = m.console.text_since(0);
    assert!(!second.contains("was not cleanly unmounted"), "{second}");
    assert!(!second.contains("recovery complete"), "the ext4 journal was replayed:\n{second}");
    assert_eq!(m.succeed("cat ~/unsynced.txt", MIN)?.trim(), "kept");
    m.wait_until_succeeds("d info", 5 * MIN)?;
    assert_eq!(m.succeed("d run --rm -v data:/data lw/bb cat /data/f", 3 * MIN)?.trim(), "in-volume");
    // The same name after the reboot; then one set by hand, at once and for good.
    assert_eq!(hostname(&mut m)?, name_a);
    m.fail("setup-hostname web_01", MIN)?;
    assert_eq!(hostname(&mut m)?, name_a, "a refused name changed something");
    m.sudo("setup-hostname web01", MIN)?;
    assert_eq!(hostname(&mut m)?, "web01");
    m.reboot()?;
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(hostname(&mut m)?, "web01");
    assert!(m.succeed("cat /etc/hosts", MIN)?.contains("web01"));

    // dockerd killed: it is back within seconds, counted, and the log says why.
    m.wait_until_succeeds("d info", 5 * MIN)?;
    m.sudo("pkill -KILL -x dockerd", MIN)?;
    let killed = std::time::Instant::now();
    m.wait_until_succeeds("d ps", 2 * MIN)?;
    println!("TIMING dockerd back after SIGKILL: {:.1} s", killed.elapsed().as_secs_f64());
    let st = m.status()?;
    let dockerd = st["services"].as_array().unwrap().iter().find(|s| s["name"] == "dockerd").unwrap().clone();
    assert_eq!(dockerd["state"], "running", "{dockerd}");
    assert!(dockerd["restarts"].as_u64().unwrap() >= 1, "{dockerd}");
    assert_eq!(dockerd["last_exit"], "killed by SIGKILL", "{dockerd}");
    let log = m.sudo("lightwhale logs", MIN)?;
    assert!(log.contains("service dockerd: exited") && log.contains("killed by SIGKILL"), "{log}");
    assert!(
        m.sudo("lightwhale logs dockerd", MIN)?.contains("API listen on"),
        "dockerd's own output is not in its log"
    );

    // The power button with a container running: off within 30 s, the container stopped
    // by Docker (its TERM trap ran), and the next boot can read how the last one ended.
    m.succeed(
        "d run -d --name worker -v data:/data lw/bb sh -c 'trap \"echo stopped-cleanly > /data/bye; exit 0\" TERM; echo trap-set; while true; do sleep 1; done'",
        3 * MIN,
    )?;
    // The shell sets its trap a moment after `docker run` returns (seconds under TCG); a
    // TERM before that is ignored by a container's PID 1 and proves nothing.
    m.wait_until_succeeds("d logs worker | grep -q trap-set", MIN)?;
    m.sudo("dmesg -n 7", MIN)?;
    let pressed = std::time::Instant::now();
    m.press_power_button()?;
    let off = pressed.elapsed();
    println!("TIMING power button to QEMU exit with a container running: {:.1} s", off.as_secs_f64());
    assert!(off <= Duration::from_secs(30), "power-off took {off:?}");
    m.power_on()?;
    m.login("op", "opsecret", 5 * MIN)?;
    m.wait_until_succeeds("d info", 5 * MIN)?;
    assert_eq!(m.succeed("d run --rm -v data:/data lw/bb cat /data/bye", 3 * MIN)?.trim(), "stopped-cleanly");
    let previous = m.sudo("lightwhale logs --previous", MIN)?;
    for expected in ["power button pressed", "shutdown: stopping dockerd", "shutdown: dockerd stopped"] {
        assert!(previous.contains(expected), "no {expected:?} in the previous boot's log:\n{previous}");
    }
    m.shutdown()?;

    // Another persistence disk, another machine id, another name.
    let mut b = machine_with_disk("operations-b", &dir.join("b.img"), None)?;
    let name_b = hostname(&mut b)?;
    assert!(name_b.starts_with("lightwhale-") && name_b != name_a, "{name_a} vs {name_b}");
    b.shutdown()?;
    Ok(())
}
