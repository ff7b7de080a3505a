//! Wi-Fi for real inside the VM: mac80211_hwsim makes two radios; one goes into a network
//! namespace as a WPA2-PSK access point (the host's hostapd, a test-only binary brought in
//! on a small ISO, not part of the image; BusyBox's udhcpd from the image hands out
//! addresses and names the access point as NTP server), the other is configured with
//! `setup-wifi` as the guide has it. It gets an address, reaches the access point and
//! chronyd gets the lease's NTP server; after a reboot with persistence it connects again
//! by itself.

use lightwhale_vm_tests::machine::shell_quote;
use lightwhale_vm_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;
const SSID: &str = "lightwhale-test";
const PASSWORD: &str = "correct horse battery";
const AP_ADDRESS: &str = "192.168.77.1";
/// Written by setup-wifi (tools/src/wifi.rs).
const CONFIG: &str = "/etc/wpa_supplicant/lightwhale.conf";
/// Where the guest mounts the test tools.
const TOOLS: &str = "/run/lw-tools";

/// An ISO 9660 image holding the host's hostapd (`cargo xtask deps` installs Debian's
/// hostapd for this test). It runs on the image's own libraries, which wpa_supplicant
/// brings (libnl, OpenSSL); the test checks that with ldd.
fn tools_iso(dir: &Path) -> Result<PathBuf, VmError> {
    let hostapd = Path::new("/usr/sbin/hostapd");
    if !hostapd.is_file() {
        return Err(VmError::Setup(
            "/usr/sbin/hostapd is missing on the host: run `cargo xtask deps` (the Wi-Fi test's access point)".into(),
        ));
    }
    let stage = dir.join("tools");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).map_err(|e| VmError::Host(e.to_string()))?;
    std::fs::copy(hostapd, stage.join("hostapd")).map_err(|e| VmError::Host(format!("copying hostapd: {e}")))?;
    let iso = dir.join("tools.iso");
    let out = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "LWTESTTOOLS", "-o"])
        .arg(&iso)
        .arg(&stage)
        .output()
        .map_err(|e| VmError::Host(format!("running xorriso: {e}")))?;
    if !out.status.success() {
        return Err(VmError::Host(format!("xorriso failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(iso)
}

/// Retries a command as root until it succeeds.
fn sudo_until(m: &mut Machine, cmd: &str, timeout: Duration) -> Result<String, VmError> {
    retry(timeout, Duration::from_secs(2), |left| m.sudo(cmd, left.max(Duration::from_secs(30))))
}

/// `sudo setup-wifi ARGS` that must fail with one line; returns the line.
fn refused(m: &mut Machine, args: &str) -> Result<String, VmError> {
    let o = m.execute(&format!("printf '%s\\n' opsecret | sudo -S -p '' setup-wifi {args}"), MIN)?;
    let text = o.text.trim().to_string();
    assert_ne!(o.code, 0, "setup-wifi {args} succeeded: {text}");
    assert_eq!(text.lines().count(), 1, "setup-wifi {args}: not one line:\n{text}");
    m.succeed(&format!("test ! -e {CONFIG}"), MIN)?;
    Ok(text)
}

/// Two simulated radios; the second one, in the namespace `ap`, becomes a WPA2-PSK access
/// point with a DHCP server. The phy moves away in the same command that creates it, before
/// the wifi service (polling once a second) could take it as a client interface.
fn start_access_point(m: &mut Machine) -> Result<(), VmError> {
    m.sudo(
        &format!("mkdir -p {TOOLS} && mount -o ro /dev/vda {TOOLS} && mkdir -p /run/lw-ap && touch /run/lw-ap/leases"),
        MIN,
    )?;
    m.sudo(
        "modprobe mac80211_hwsim radios=2 && ip netns add ap && \
         iw phy \"$(cat /sys/class/net/wlan1/phy80211/name)\" set netns name ap",
        MIN,
    )?;
    let hostapd = format!(
        "interface=wlan1\ndriver=nl80211\nssid={SSID}\nhw_mode=g\nchannel=6\ncountry_code=DE\n\
         wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase={PASSWORD}\n"
    );
    // The lease names the access point as NTP server (option 42), for the time sync hook.
    let udhcpd = format!(
        "start 192.168.77.100\nend 192.168.77.150\ninterface wlan1\n\
         lease_file /run/lw-ap/leases\noption subnet 255.255.255.0\noption ntpsrv {AP_ADDRESS}\n"
    );
    m.sudo(
        &format!(
            "printf '%s' {} > /run/lw-ap/hostapd.conf && printf '%s' {} > /run/lw-ap/udhcpd.conf",
            shell_quote(&hostapd),
            shell_quote(&udhcpd)
        ),
        MIN,
    )?;
    m.sudo(
        &format!(
            "ip netns exec ap ip link set lo up && ip netns exec ap ip addr add {AP_ADDRESS}/24 dev wlan1 && \
             ip netns exec ap {TOOLS}/hostapd -B -f /run/lw-ap/hostapd.log /run/lw-ap/hostapd.conf"
        ),
        MIN,
    )?;
    // hostapd writes its log for root only.
    sudo_until(m, "grep -q AP-ENABLED /run/lw-ap/hostapd.log", 2 * MIN)?;
    // udhcpd goes into the background by itself.
    m.sudo("ip netns exec ap busybox udhcpd /run/lw-ap/udhcpd.conf", MIN)?;
    Ok(())
}

/// wlan0 has an address from the access point's DHCP server and reaches the access point.
fn connected(m: &mut Machine, timeout: Duration) -> Result<String, VmError> {
    let addr = m.wait_until_succeeds("ip -4 -o addr show wlan0 | grep -o 'inet 192\\.168\\.77\\.[0-9]*'", timeout)?;
    m.sudo(&format!("busybox ping -c 3 -W 5 {AP_ADDRESS}"), MIN)?;
    Ok(addr.trim().to_string())
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn wifi_with_setup_wifi_and_a_simulated_access_point() -> Result<(), VmError> {
    let a = artifacts()?;
    let dir = work_dir().join("wifi-disks");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Host(e.to_string()))?;
    let tools = tools_iso(&dir)?;
    let disk = dir.join("persistence.img");
    host::magic_disk(&disk, 700 * MIB)?;

    let mut config = Config::new(Boot::Cdrom(a.iso.clone()));
    config.forwards.clear();
    config.disks = vec![
        Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false },
        Disk { path: tools, iface: Iface::Virtio, snapshot: true },
    ];
    let mut m = Machine::start("wifi", config)?;
    m.wait_for_console_line("lightwhale: persistence ready:", 5 * MIN)?;
    m.login("op", "opsecret", 5 * MIN)?;

    // Bad input: one line each, nothing written. No Wi-Fi hardware exists yet.
    let help = m.succeed("setup-wifi --help", MIN)?;
    assert!(help.contains("--ssid") && help.contains("--country") && help.contains("--off"), "{help}");
    let line = refused(&mut m, "--password 'correct horse' --country DE")?;
    assert!(line.contains("missing --ssid"), "{line}");
    let line = refused(&mut m, "--ssid home --password 1234567 --country DE")?;
    assert!(line.contains("8 to 63 characters"), "{line}");
    let line = refused(&mut m, "--ssid home --password 'correct horse' --country XX")?;
    assert!(line.contains("unknown country code \"XX\""), "{line}");
    let line = refused(&mut m, "--ssid home --password 'correct horse' --country de")?;
    assert!(line.contains("no Wi-Fi interface"), "{line}");
    // The wifi service is not configured, so not running; and without Wi-Fi hardware the
    // Wi-Fi stack stays unloaded, even after dhcpcd has looked at Docker's bridge.
    m.fail("pgrep -x lightwhale-wifi", MIN)?;
    m.wait_until_succeeds("ip link show docker0", 5 * MIN)?;
    m.succeed("test ! -e /sys/module/cfg80211", MIN)?;

    start_access_point(&mut m)?;
    let missing = m.succeed(&format!("ldd {TOOLS}/hostapd | grep -c 'not found' || true"), MIN)?;
    assert_eq!(missing.trim(), "0", "hostapd's libraries do not all resolve in the image");

    let out = m.sudo(&format!("setup-wifi --ssid {SSID} --password {} --country de", shell_quote(PASSWORD)), MIN)?;
    assert!(out.contains("Wi-Fi configured") && out.contains("wlan0"), "{out}");
    assert_eq!(m.sudo(&format!("stat -c %a {CONFIG}"), MIN)?.trim(), "600");
    m.fail(&format!("cat {CONFIG}"), MIN)?;
    m.sudo(&format!("! grep -q {} {CONFIG} && grep -q '^country=DE$' {CONFIG}", shell_quote(PASSWORD)), MIN)?;
    assert!(m.succeed("/usr/sbin/iw reg get", MIN)?.contains("country DE"));
    let addr = connected(&mut m, 3 * MIN)?;
    println!("boot 1: wlan0 {addr}");
    assert!(m.succeed("pgrep -a wpa_supplicant", MIN)?.contains("-i wlan0"));
    // The control interface answers (the README's way to see the connection).
    assert!(m.sudo("/usr/sbin/wpa_cli -i wlan0 status", MIN)?.contains("wpa_state=COMPLETED"));
    // The lease's NTP server reaches the running chronyd: dhcpcd's hook writes it down and
    // reloads chrony's sources from inside dhcpcd's sandbox.
    sudo_until(&mut m, &format!("grep -qx 'server {AP_ADDRESS} iburst' /run/chrony-dhcp/wlan0.sources"), MIN)?;
    m.wait_until_succeeds(&format!("chronyc -n sources | grep -q '{AP_ADDRESS}'"), MIN)?;

    // Boot 2: the configuration is on the persistence disk; the radios come back when the
    // (simulated) hardware does, and the machine connects without setup-wifi.
    m.reboot()?;
    m.wait_for_console_line("lightwhale: persistence ready:", 5 * MIN)?;
    m.login("op", "opsecret", 5 * MIN)?;
    m.sudo(&format!("test -s {CONFIG}"), MIN)?;
    m.wait_until_succeeds("pgrep -x lightwhale-wifi", 2 * MIN)?;
    start_access_point(&mut m)?;
    let addr = connected(&mut m, 3 * MIN)?;
    println!("boot 2: wlan0 {addr}, without setup-wifi");
    assert!(m.sudo("cat /var/log/wifi.log", MIN)?.contains("wlan0: wpa_supplicant started"));

    // Off: the configuration goes and the init stops the service at once.
    let out = m.sudo("setup-wifi --off", MIN)?;
    assert!(out.contains("Wi-Fi is off"), "{out}");
    m.wait_until_succeeds("! pgrep -x wpa_supplicant && ! pgrep -x lightwhale-wifi", MIN)?;
    m.sudo(&format!("test ! -e {CONFIG}"), MIN)?;
    assert!(m.sudo("setup-wifi --off", MIN)?.contains("nothing to do"));
    m.shutdown()?;
    Ok(())
}
