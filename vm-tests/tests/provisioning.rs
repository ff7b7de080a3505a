//! Headless first boot from a cloud-init NoCloud seed, as someone with a rack of machines
//! would use it: a persistence disk and a `cidata` seed with an SSH key, a hostname, files
//! and a Compose app. The machine is never logged into to set it up: the checks come from
//! the host (SSH, HTTP) and the console only reads. Then: a reboot (nothing applied twice),
//! a new instance-id (the new seed applied, with a static network-config), a malformed
//! user-data on a RAM-only boot (the boot goes on and says why), and lightwhale.nocloud=off.

use lightwhale_vm_tests::host::{self, Auth, Ssh};
use lightwhale_vm_tests::*;
use std::time::Duration;

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// The app: busybox's httpd from an image the test imports (there is no registry), with
/// `pull_policy: never` so a missing image fails at once instead of trying to pull.
const WEB_APP: &str = "services:
  web:
    image: lw/httpd
    pull_policy: never
    entrypoint: [\"/busybox\"]
    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]
    ports: [\"80:80\"]
    volumes: [\"/var/www:/www:ro\"]
";

/// An app whose image does not exist: it must fail without stopping `web`.
const BROKEN_APP: &str = "services:
  nothing:
    image: lw/missing
    pull_policy: never
";

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

fn user_data_1(pubkey: &str) -> String {
    format!(
        "#cloud-config
hostname: seeded
fqdn: seeded.lightwhale.test
ssh_authorized_keys:
  - {pubkey}
users:
  - default
  - name: deploy
    groups: [docker]
    sudo: \"ALL=(ALL) NOPASSWD:ALL\"
write_files:
  - path: /etc/lightwhale/compose/web/compose.yaml
    content: |
{web}  - path: /etc/lightwhale/compose/broken/compose.yaml
    content: |
{broken}  - path: /var/www/index.html
    content: \"<h1>provisioned by a seed</h1>\\n\"
  - path: /etc/lightwhale/applied.log
    append: true
    content: \"applied\\n\"
  - path: /usr/bin/evil
    content: \"not in the image\\n\"
runcmd:
  - echo never run
timezone: Europe/Copenhagen
",
        web = indent(WEB_APP),
        broken = indent(BROKEN_APP)
    )
}

const USER_DATA_2: &str = "#cloud-config
hostname: second
ssh_pwauth: true
write_files:
  - path: /etc/lightwhale/applied.log
    append: true
    content: \"applied\\n\"
";

/// QEMU's user network with a static address instead of DHCP, found by the NIC's MAC.
const NETWORK_2: &str = "version: 2
ethernets:
  lan:
    match:
      macaddress: '52:54:00:12:34:56'
    addresses: [10.0.2.15/24]
    routes:
      - to: default
        via: 10.0.2.2
    nameservers:
      addresses: [10.0.2.3]
      search: [lightwhale.test]
";

fn json(m: &mut Machine, path: &str) -> Result<serde_json::Value, VmError> {
    let text = m.succeed(&format!("cat {path}"), MIN)?;
    serde_json::from_str(&text).map_err(|e| VmError::Host(format!("{path} is not JSON: {e}: {text}")))
}

/// A password login must be refused by the server, not fail for another reason.
fn password_refused(ssh: &Ssh) -> Result<(), VmError> {
    match ssh.run(Auth::Password("opsecret"), "true") {
        Ok(_) => Err(VmError::Host("SSH password login worked, but the seed gave keys".into())),
        Err(e) if e.to_string().contains("Permission denied") => Ok(()),
        Err(e) => Err(e),
    }
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn provisioning_walkthrough() -> Result<(), VmError> {
    let a = artifacts()?;
    let dir = fresh_dir("provisioning-disks")?;
    let disk = dir.join("persistence.img");
    host::magic_disk(&disk, 700 * MIB)?;
    let key = host::ssh_keygen(&dir)?;
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).map_err(|e| VmError::Host(e.to_string()))?;
    let seed_dir = dir.join("seed");
    let seed_img = dir.join("seed.iso");
    seed::write_dir(
        &seed_dir,
        "instance-id: lw-test-1\nlocal-hostname: from-meta-data\n",
        &user_data_1(pubkey.trim()),
        None,
    )?;
    seed::iso(&seed_dir, &seed_img)?;

    let mut config = Config::new(Boot::Cdrom(a.iso.clone()));
    config.disks = vec![Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false }];
    config.seed = Some(seed_img.clone());
    let mut m = Machine::start("provisioning", config)?;

    // Boot 1: the seed is found, read and applied before the services start.
    m.wait_for_console_text("scan: vda", 5 * MIN)?;
    m.wait_for_console_text("cidata seed (iso9660)", MIN)?;
    m.wait_for_console_line("nocloud: seed on vda (iso9660), instance-id lw-test-1", 5 * MIN)?;
    let ignored = m.wait_for_console_line("nocloud: not supported, ignored:", MIN)?;
    assert!(ignored.contains("user-data: timezone"), "{ignored}");
    let refused = m.wait_for_console_line("nocloud: write_files /usr/bin/evil refused:", MIN)?;
    assert!(refused.contains("read-only image"), "{refused}");
    let applied = m.wait_for_console_line("lightwhale: nocloud seed:", MIN)?;
    println!("TIMING {applied}");
    assert!(applied.contains("instance lw-test-1 applied"), "{applied}");
    assert!(m.console.text_since(0).contains("user-data: runcmd refused"), "runcmd was not refused on the console");

    // From the host: the key logs in, the public default password does not.
    let ssh = Ssh::new(m.host_port(22), "op", m.dir());
    assert_eq!(ssh.run_retry(Auth::Key(&key), "hostname", 5 * MIN)?.trim(), "seeded");
    password_refused(&ssh)?;

    m.login("op", "opsecret", 5 * MIN)?;
    let st = json(&mut m, "/run/lightwhale/nocloud.json")?;
    assert_eq!(st["applied"], true, "{st}");
    assert_eq!(st["seed"]["device"], "vda", "{st}");
    assert!(st["refused"].to_string().contains("/usr/bin/evil"), "{st}");
    assert!(st["unknown_keys"].to_string().contains("user-data: timezone"), "{st}");
    m.fail("test -e /usr/bin/evil", MIN)?;
    assert!(m.succeed("id deploy", MIN)?.contains("(docker)"));
    assert!(m.sudo("sudo -l -U deploy", MIN)?.contains("NOPASSWD: ALL"));
    assert!(m.succeed("cat /etc/hosts", MIN)?.contains("127.0.1.1\tseeded.lightwhale.test seeded"));
    assert!(m.succeed("findmnt -n -o FSTYPE /etc", MIN)?.contains("overlay"), "/etc is the persisted overlay");
    m.fail("findmnt /run/lightwhale/seed", MIN)?;

    // The apps ran at boot once Docker answered; neither image exists yet, so both failed
    // and both are reported. Then the image arrives for the next boot.
    m.wait_until_succeeds("grep -c '\"name\"' /run/lightwhale/compose.json | grep -qx 2", 5 * MIN)?;
    let apps = json(&mut m, "/run/lightwhale/compose.json")?;
    assert_eq!(apps["docker_ready"], true, "{apps}");
    assert_eq!(apps["projects"][0]["name"], "broken", "{apps}");
    assert_eq!(apps["projects"][0]["ok"], false, "{apps}");
    assert_eq!(apps["projects"][1]["ok"], false, "web has no image yet: {apps}");
    m.succeed(
        "mkdir -p /tmp/img && cp /usr/bin/busybox /tmp/img/ && tar -C /tmp/img -c busybox | d import - lw/httpd",
        3 * MIN,
    )?;

    // Boot 2: everything is still there, the app starts at boot, nothing applied twice.
    let host_key = ssh.pinned_host_keys();
    m.reboot()?;
    let skipped = m.wait_for_console_line("lightwhale: nocloud seed:", 5 * MIN)?;
    assert!(skipped.contains("instance lw-test-1 was applied on an earlier boot"), "{skipped}");
    let page = host::http_get_retry(m.host_port(80), "/", 5 * MIN)?;
    assert!(page.contains("provisioned by a seed"), "{page}");
    assert_eq!(ssh.run_retry(Auth::Key(&key), "hostname", 3 * MIN)?.trim(), "seeded");
    assert_eq!(ssh.pinned_host_keys(), host_key);
    password_refused(&ssh)?;
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("cat /etc/lightwhale/applied.log", MIN)?, "applied\n", "the seed was applied twice");
    assert_eq!(m.succeed("cat /etc/lightwhale/nocloud/instance-id", MIN)?.trim(), "lw-test-1");
    let st = json(&mut m, "/run/lightwhale/nocloud.json")?;
    assert_eq!(st["applied"], false, "{st}");
    m.wait_until_succeeds("grep -c '\"name\"' /run/lightwhale/compose.json | grep -qx 2", 5 * MIN)?;
    let apps = json(&mut m, "/run/lightwhale/compose.json")?;
    assert_eq!(
        (apps["projects"][0]["name"].as_str(), apps["projects"][0]["ok"].as_bool()),
        (Some("broken"), Some(false))
    );
    assert_eq!((apps["projects"][1]["name"].as_str(), apps["projects"][1]["ok"].as_bool()), (Some("web"), Some(true)));
    assert!(m.sudo("cat /var/log/compose-apps.log", MIN)?.contains("== broken: FAILED"));

    // Boot 3: a new instance-id brings new data: another hostname, password logins back
    // on, and a static network configuration instead of DHCP.
    m.shutdown()?;
    seed::write_dir(&seed_dir, "instance-id: lw-test-2\n", USER_DATA_2, Some(NETWORK_2))?;
    seed::iso(&seed_dir, &seed_img)?;
    m.power_on()?;
    m.wait_for_console_line("nocloud: seed on vda (iso9660), instance-id lw-test-2", 5 * MIN)?;
    m.wait_for_console_line("nocloud: network: static configuration for eth0", MIN)?;
    assert_eq!(ssh.run_retry(Auth::Password("opsecret"), "hostname", 5 * MIN)?.trim(), "second");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("cat /etc/lightwhale/applied.log", MIN)?, "applied\napplied\n");
    // QEMU's DHCP server hands out the same address, so the proof of a static one: no
    // lease ("dynamic", a finite lifetime) and a search domain DHCP does not give.
    let addr = m.wait_until_succeeds("ip -4 -o addr show eth0 | grep 10.0.2.15/24", 2 * MIN)?;
    assert!(!addr.contains("dynamic") && addr.contains("valid_lft forever"), "{addr}");
    assert!(m.succeed("cat /etc/resolv.conf", MIN)?.contains("search lightwhale.test"));
    assert!(m.succeed("cat /etc/dhcpcd.conf", MIN)?.contains("interface eth0\n  static ip_address=10.0.2.15/24\n"));
    assert!(m.succeed("ip route show default", MIN)?.contains("via 10.0.2.2"));
    let page = host::http_get_retry(m.host_port(80), "/", 5 * MIN)?;
    assert!(page.contains("provisioned by a seed"), "{page}");
    m.shutdown()?;

    // A malformed user-data on a RAM-only boot (a FAT seed this time): the boot goes on,
    // the console says which file and line, and meta-data still names the host.
    let bad_dir = dir.join("seed-bad");
    let bad_img = dir.join("seed-bad.img");
    seed::write_dir(
        &bad_dir,
        "instance-id: lw-bad\nlocal-hostname: ramonly\n",
        "#cloud-config\nhostname: web\nusers:\n  - name: a\n   groups: [x\nssh_pwauth: false\n",
        None,
    )?;
    seed::vfat(&bad_dir, &bad_img)?;
    let mut config = Config::new(a.kernel_boot("lightwhale.persistence=tmpfs")?);
    config.seed = Some(bad_img.clone());
    config.forwards.clear();
    let mut m = Machine::start("provisioning-malformed", config)?;
    m.wait_for_console_line("nocloud: seed on vda (vfat), instance-id lw-bad", 5 * MIN)?;
    let line = m.wait_for_console_line("nocloud: user-data line 5", MIN)?;
    assert!(line.contains("the boot goes on without it"), "{line}");
    m.login("op", "opsecret", 5 * MIN)?;
    assert_eq!(m.succeed("hostname", MIN)?.trim(), "ramonly");
    let st = json(&mut m, "/run/lightwhale/nocloud.json")?;
    assert!(st["errors"][0].as_str().is_some_and(|e| e.starts_with("user-data line 5")), "{st}");
    m.shutdown()?;

    // lightwhale.nocloud=off: the seed is seen and left alone. (With
    // lightwhale.persistence=tmpfs as well, no device would be looked at at all.)
    let mut config = Config::new(a.kernel_boot("lightwhale.nocloud=off")?);
    config.seed = Some(seed_img);
    config.forwards.clear();
    let mut m = Machine::start("provisioning-off", config)?;
    m.wait_for_console_line("nocloud: lightwhale.nocloud=off: the seed on vda is ignored", 5 * MIN)?;
    m.login("op", "opsecret", 5 * MIN)?;
    // The image's default (lightwhale-<machine id>), not the seed's name.
    let name = m.succeed("hostname", MIN)?;
    assert!(name.trim().starts_with("lightwhale-"), "{name}");
    assert!(!m.console.text_since(0).contains("unknown kernel option"), "lightwhale.nocloud=off is a known option");
    m.shutdown()?;
    Ok(())
}
