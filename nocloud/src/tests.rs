//! Seeds as people write them (in the style of cloud-init's documentation examples),
//! through the parser and the plan; the files written on a scratch root; property tests
//! that no input makes the parser or the plan panic.

use super::network::Nic;
use super::parse::{self, Parsed};
use super::plan::{self, Env, Plan};
use super::*;
use lightwhale_types::accounts::Accounts;
use lightwhale_types::config::Filesystems;

fn salt() -> String {
    "saltsaltsaltsalt".into()
}

fn parse_all(meta: &str, user: &str, net: Option<&str>) -> Parsed {
    parse::parse_seed(Some(meta.as_bytes()), Some(user.as_bytes()), net.map(str::as_bytes), &mut salt)
}

fn image_accounts() -> Accounts {
    Accounts {
        passwd: "root:x:0:0:root:/root:/bin/bash\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\nsshd:x:999:65534:sshd user:/run/sshd:/usr/sbin/nologin\nop:x:1000:1000::/home/op:/bin/bash\n".into(),
        group: "root:x:0:\nsys:x:3:\nsudo:x:27:op\nusers:x:100:\ndocker:x:102:op\nop:x:1000:\n".into(),
        shadow: "root:*:20783:0:99999:7:::\nsys:*:20783:0:99999:7:::\nsshd:!*:20783::::::\nop:$6$image$hash:20783:0:99999:7:::\n".into(),
        gshadow: "root:*::\nsys:*::\nsudo:*::op\nusers:*::\ndocker:!::op\nop:!::\n".into(),
        subuid: "op:100000:65536\n".into(),
        subgid: "op:100000:65536\n".into(),
    }
}

fn filesystems() -> Filesystems {
    Filesystems {
        persisted: vec!["/etc".into(), "/home".into(), "/root".into(), "/var/www".into()],
        volatile: vec!["/var".into(), "/mnt".into()],
        tmpfs: vec!["/tmp".into()],
    }
}

const HOSTS: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tlightwhale\n::1\t\tlocalhost ip6-localhost ip6-loopback\n";
const DHCPCD: &str = "allowinterfaces eth* en*\nnoarp\n";

fn nics() -> Vec<Nic> {
    vec![Nic { name: "eth0".into(), mac: "52:54:00:12:34:56".into() }]
}

fn plan_of(p: &Parsed) -> Plan {
    let acc = image_accounts();
    let fs = filesystems();
    let nics = nics();
    plan::plan(
        p,
        &Env {
            accounts: &acc,
            filesystems: &fs,
            data_root: "/mnt/lightwhale-data",
            hosts: HOSTS,
            dhcpcd: DHCPCD,
            nics: &nics,
            lastchg: 20800,
        },
    )
}

fn whats(r: &[Refused]) -> Vec<String> {
    r.iter().map(|r| r.what.clone()).collect()
}

/// The provisioning page's example (modules/provision/example/user-data): everything Lightwhale
/// reads in one seed.
pub fn example_user_data() -> String {
    include_str!("../../modules/provision/example/user-data").to_string()
}

#[test]
fn the_provisioning_page_shows_the_example_verbatim() {
    // The flake's sources leave the docs out; the Debian path always has them.
    if let Ok(page) = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/provisioning.md")) {
        assert!(
            page.contains(&format!("```yaml\n{}```", example_user_data())),
            "docs/provisioning.md and the example differ"
        );
    }
}

#[test]
fn the_example_parses_and_plans_as_documented() {
    let meta = include_str!("../../modules/provision/example/meta-data");
    let p = parse_all(meta, &example_user_data(), None);
    assert_eq!(p.errors, Vec::<String>::new());
    assert_eq!(p.instance_id, "web1-2026-01");
    assert!(!p.instance_id_from_content);
    assert!(p.unknown_keys.is_empty(), "{:?}", p.unknown_keys);
    assert!(p.refused.is_empty(), "{:?}", p.refused);
    let u = &p.user;
    assert_eq!(u.op_keys.len(), 1);
    assert_eq!(u.passwords[0].0, "op");
    assert!(u.passwords[0].1.starts_with("$6$rounds=4096$"), "a given hash is kept as it is");
    assert_eq!(u.users.len(), 1, "`default` is op, not a new user");
    let plan = plan_of(&p);
    assert!(plan.refused.is_empty(), "{:?}", plan.refused);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert_eq!(plan.hostname.as_deref(), Some("web1\n"));
    assert!(plan.hosts.as_deref().unwrap().contains("127.0.1.1\tweb1.example.com web1\n"));
    let acc = plan.accounts.as_ref().unwrap();
    let deploy = acc.user("deploy").unwrap();
    assert_eq!((deploy.uid, deploy.shell.as_str()), (1001, "/bin/bash"));
    assert!(acc.group.contains("\ndocker:x:102:op,deploy\n"));
    assert_eq!(acc.password_field("deploy").unwrap(), "!", "a users: entry is locked by default");
    assert!(acc.password_field("op").unwrap().starts_with("$6$rounds=4096$"));
    assert_eq!(plan.keys.iter().map(|k| k.user.as_str()).collect::<Vec<_>>(), ["op", "deploy"]);
    assert!(plan.sshd.as_deref().unwrap().contains("PasswordAuthentication no\n"), "keys given: password logins off");
    assert_eq!(plan.sudoers.as_deref().unwrap().lines().nth(1), Some("deploy ALL=(ALL) NOPASSWD:ALL"));
    assert_eq!(plan.files.len(), 1);
    assert_eq!((plan.files[0].uid, plan.files[0].gid, plan.files[0].mode), (0, 0, 0o644));
    assert!(String::from_utf8_lossy(&plan.files[0].content).contains("traefik/whoami"));
    assert!(plan
        .ntp
        .as_deref()
        .unwrap()
        .ends_with("server ntp.example.com iburst\npool 2.debian.pool.ntp.org iburst\n"));
    assert!(plan.dhcpcd.is_none(), "no network-config: dhcpcd.conf untouched");
}

/// cloud-init's "Including users and groups" example, trimmed of keys no image has.
#[test]
fn users_and_groups_as_in_the_cloud_init_docs() {
    let user_data = r#"#cloud-config
groups:
  - admingroup: [root,sys]
  - cloud-users
users:
  - default
  - name: foobar
    gecos: Foo B. Bar
    primary_group: foobar
    groups: users
    selinux_user: staff_u
    expiredate: '2032-09-01'
    ssh_import_id:
      - lp:falcojr
    lock_passwd: false
    passwd: $6$j212wezy$7H/1LT4f9/N3wpgNunhsIqtMj62OKiS3nyNwuizouQc3u7MbYCarYeAHWYPYb2FT.lbioDm2RrkJPb9BZMN1O/
  - name: barfoo
    gecos: Bar B. Foo
    sudo: ALL=(ALL) NOPASSWD:ALL
    groups: users, admin
    lock_passwd: true
    ssh_authorized_keys:
      - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC barfoo@host
  - name: cloudy
    gecos: Magic Cloud App Daemon User
    inactive: '5'
    system: true
  - name: root
    ssh_authorized_keys: [ssh-ed25519 AAAA root-key]
"#;
    let p = parse_all("instance-id: i-1", user_data, None);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let mut unknown = p.unknown_keys.clone();
    unknown.sort();
    assert_eq!(
        unknown,
        ["user-data: users.1.expiredate", "user-data: users.1.selinux_user", "user-data: users.3.inactive",]
    );
    // What cannot be done is refused with a line, not passed over.
    let refused: Vec<String> = p.refused.iter().map(|r| format!("{}: {}", r.what, r.why)).collect();
    for (what, why) in [
        ("users foobar primary_group", "its own"),
        ("users foobar ssh_import_id", "ssh_authorized_keys"),
        ("users cloudy system", "regular users"),
    ] {
        assert!(
            refused.iter().any(|r| r.starts_with(&format!("user-data: {what}: ")) && r.contains(why)),
            "{what}: {refused:?}"
        );
    }
    let plan = plan_of(&p);
    let acc = plan.accounts.as_ref().unwrap();
    assert!(
        acc.group_id("admingroup").is_some()
            && acc.group_id("cloud-users").is_some()
            && acc.group_id("admin").is_some()
    );
    assert!(acc.group.contains("\nusers:x:100:foobar,barfoo\n"), "{}", acc.group);
    // The groups came first and took gids 1001 and 1002, as groupadd before useradd would.
    assert!(acc.passwd.contains("\nfoobar:x:1001:1003:Foo B. Bar:/home/foobar:/bin/bash\n"), "{}", acc.passwd);
    assert!(
        acc.password_field("foobar").unwrap().starts_with("$6$j212wezy$"),
        "lock_passwd: false keeps the hash usable"
    );
    assert_eq!(acc.password_field("barfoo").unwrap(), "!");
    assert_eq!(acc.password_field("root").unwrap(), "*", "root is never touched");
    assert_eq!(plan.homes.len(), 3);
    let refused = whats(&plan.refused);
    assert!(refused.contains(&"groups: admingroup: root".to_string()), "{refused:?}");
    assert!(refused.contains(&"groups: admingroup: sys".to_string()));
    assert!(refused.contains(&"users: root".to_string()));
    assert!(!acc.group.contains("admingroup:x:1002:root"), "system accounts are not added to groups");
    assert!(plan.sudoers.unwrap().contains("\nbarfoo ALL=(ALL) NOPASSWD:ALL\n"));
    assert!(plan.sshd.unwrap().contains("PasswordAuthentication no"));
}

/// cloud-init's write_files examples: base64, plain, gzip'd binary, into the image.
#[test]
fn write_files_as_in_the_cloud_init_docs() {
    let user_data = r#"#cloud-config
write_files:
- encoding: b64
  content: CiMgVGhpcyBmaWxlIGNvbnRyb2xzIHRoZSBzdGF0ZSBvZiBTRUxpbnV4
  owner: root:root
  path: /etc/sysconfig/selinux
  permissions: '0644'
- content: |
    # My new /etc/sysconfig/samba file

    SMBDOPTIONS="-D"
  path: /etc/sysconfig/samba
- encoding: gzip
  content: !!binary |
    H4sIAIDb/U8C/1NW1E/KzNMvzuBKTc7IV8hIzcnJVyjPL8pJ4QIA6N+MVxsAAAA=
  path: /usr/bin/hello
  permissions: '0755'
- path: /home/op/.config/app.toml
  owner: op:op
  permissions: 0600
  content: "key = 1\n"
- path: /var/www/index.html
  append: true
  content: "<p>appended</p>\n"
- path: /etc/../usr/evil
  content: x
- path: /mnt/lightwhale-data/overlay/etc/upper/shadow
  content: x
- path: /run/lightwhale/x
  content: x
- path: /etc/suid
  permissions: '4755'
  content: x
- path: /etc/owned
  owner: nobody:nogroup
  content: x
- path: /etc/sourced
  source: {uri: "https://example.com/x"}
"#;
    let p = parse_all("instance-id: i-2", user_data, None);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(whats(&p.refused), ["write_files /etc/sourced"]);
    let files = &p.user.files;
    assert_eq!(files[0].content(), b"\n# This file controls the state of SELinux");
    assert_eq!(files[2].content(), b"#!/bin/sh\necho hello world\n", "gzip inside !!binary");
    assert_eq!(files[3].mode, Some(0o600), "an unquoted 0600 is octal, as cloud-init reads it");
    let plan = plan_of(&p);
    let written: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        written,
        ["/etc/sysconfig/selinux", "/etc/sysconfig/samba", "/home/op/.config/app.toml", "/var/www/index.html"]
    );
    assert_eq!((plan.files[2].uid, plan.files[2].gid), (1000, 1000));
    assert!(plan.files[3].append);
    let refused: Vec<String> = plan.refused.iter().map(|r| format!("{}: {}", r.what, r.why)).collect();
    let find =
        |p: &str| refused.iter().find(|r| r.starts_with(&format!("write_files {p}:"))).cloned().unwrap_or_default();
    assert!(find("/usr/bin/hello").contains("read-only image"), "{refused:?}");
    assert!(find("/usr/bin/hello").contains("/etc /home /root /var/www"), "the message names where files may go");
    assert!(find("/etc/../usr/evil").contains("no //, . or .. parts"));
    assert!(find("/mnt/lightwhale-data/overlay/etc/upper/shadow").contains("persistence device's own layout"));
    assert!(find("/run/lightwhale/x").contains("read-only image"));
    assert!(find("/etc/suid").contains("setuid"));
    assert!(find("/etc/owned").contains("no user nobody"));
}

#[test]
fn passwords_are_hashed_at_once_and_never_kept_in_clear() {
    let user_data = r#"#cloud-config
ssh_pwauth: true
password: opsecret2
chpasswd:
  expire: true
  list: |
    op:$6$abc$def
    ghost:secret
    sshd:secret
  users:
    - {name: op, password: plain-again, type: text}
    - {name: op, password: RANDOM, type: RANDOM}
"#;
    let p = parse_all("instance-id: i-3", user_data, None);
    let text = ron::to_string(&p).unwrap();
    for clear in ["opsecret2", "plain-again", "secret"] {
        assert!(!text.contains(clear), "{clear} left the parser in clear");
    }
    assert_eq!(
        p.user.passwords[0],
        ("op".into(), lightwhale_types::accounts::sha512_crypt("opsecret2", "saltsaltsaltsalt"))
    );
    assert_eq!(p.user.passwords[1], ("op".into(), "$6$abc$def".into()));
    assert!(whats(&p.refused).contains(&"user-data: chpasswd.expire".to_string()));
    assert!(whats(&p.refused).contains(&"user-data: chpasswd for op".to_string()), "RANDOM");
    let plan = plan_of(&p);
    let refused = whats(&plan.refused);
    assert!(refused.contains(&"password of ghost".to_string()) && refused.contains(&"password of sshd".to_string()));
    assert!(plan.sshd.unwrap().contains("PasswordAuthentication yes"), "ssh_pwauth: true keeps them on");
    // The last one given wins, as with chpasswd run in order.
    assert!(plan.accounts.unwrap().password_field("op").unwrap().starts_with("$6$saltsaltsaltsalt$"));
}

#[test]
fn password_logins_default() {
    assert_eq!(plan::password_logins(None, false), None, "no keys, no opinion: the image's setting");
    assert_eq!(plan::password_logins(None, true), Some(false), "keys alone turn password logins off");
    assert_eq!(plan::password_logins(Some(true), true), Some(true));
    assert_eq!(plan::password_logins(Some(false), false), Some(false));
    let p = parse_all("instance-id: x", "#cloud-config\nssh_pwauth: no\n", None);
    assert_eq!(p.user.ssh_pwauth, Some(false), "YAML 1.1 `no` is false, as in cloud-init");
    assert!(plan_of(&p).sshd.unwrap().contains("PasswordAuthentication no"));
    assert_eq!(plan_of(&parse_all("instance-id: x", "#cloud-config\nhostname: h\n", None)).sshd, None);
}

#[test]
fn hostnames_follow_cloud_init() {
    let host = |meta: &str, user: &str| plan::hostname(&parse_all(meta, user, None));
    assert_eq!(host("local-hostname: meta", "#cloud-config\n"), Some(("meta".into(), None)));
    assert_eq!(host("local-hostname: meta.lan", ""), Some(("meta".into(), Some("meta.lan".into()))));
    assert_eq!(host("local-hostname: meta", "#cloud-config\nhostname: user\n"), Some(("user".into(), None)));
    assert_eq!(host("", "#cloud-config\nhostname: a.b.c\n"), Some(("a".into(), Some("a.b.c".into()))));
    assert_eq!(host("", "#cloud-config\nhostname: h\nfqdn: x.example\n"), Some(("h".into(), Some("x.example".into()))));
    assert_eq!(host("", ""), None);
    let p = parse_all(
        "",
        "#cloud-config\nfqdn: web.example.org\nprefer_fqdn_over_hostname: true\nmanage_etc_hosts: false\n",
        None,
    );
    let plan = plan_of(&p);
    assert_eq!(plan.hostname.as_deref(), Some("web.example.org\n"));
    assert_eq!(plan.hosts, None, "manage_etc_hosts: false");
    let bad = plan_of(&parse_all("", "#cloud-config\nhostname: bad_name!\n", None));
    assert_eq!(bad.hostname, None);
    assert_eq!(whats(&bad.refused), ["hostname bad_name!"]);
    assert!(plan_of(&parse_all("", "#cloud-config\nhostname: h\npreserve_hostname: true\n", None)).hostname.is_none());
    assert_eq!(
        lightwhale_types::hostname::hosts_with("127.0.0.1 localhost\n", "h", None),
        "127.0.0.1 localhost\n127.0.1.1\th\n"
    );
}

#[test]
fn scripts_and_other_formats_are_refused_with_a_reason() {
    for (user, expect) in [
        ("#!/bin/bash\necho hi\n", "it is a script (#!)"),
        ("Content-Type: multipart/mixed; boundary=x\n", "multi-part MIME"),
        ("#include\nhttps://example.com/x\n", "only #cloud-config"),
    ] {
        let p = parse_all("instance-id: s", user, None);
        assert_eq!(whats(&p.refused), ["user-data"], "{user}");
        assert!(p.refused[0].why.contains(expect), "{:?}", p.refused);
        assert_eq!(p.user, parse::UserData::default());
    }
    let gz = parse::parse_seed(None, Some(&[0x1f, 0x8b, 8, 0]), None, &mut salt);
    assert!(gz.refused[0].why.contains("gzip"));
    let plain = parse_all("instance-id: s", "hostname: x\n", None);
    assert_eq!(plain.errors, ["user-data line 1: does not start with #cloud-config; not read"]);
    assert!(parse_all("instance-id: s", "\n  \n", None).errors.is_empty(), "an empty user-data is no error");
}

#[test]
fn malformed_files_are_one_line_naming_the_file_and_the_line() {
    let p = parse_all(
        "instance-id: m\nlocal-hostname: still-applied\n",
        "#cloud-config\nhostname: web\nusers:\n  - name: a\n   groups: [x\nssh_pwauth: false\n",
        None,
    );
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    assert!(p.errors[0].starts_with("user-data line 5 column "), "{}", p.errors[0]);
    assert!(!p.errors[0].contains('\n'), "one line: {:?}", p.errors[0]);
    assert!(p.errors[0].ends_with("did not find expected '-' indicator"), "said once: {:?}", p.errors[0]);
    assert_eq!(p.user, parse::UserData::default(), "the whole user-data is left out");
    assert_eq!(plan_of(&p).hostname.as_deref(), Some("still-applied\n"), "meta-data still counts");
    let typed =
        parse_all("instance-id: m", "#cloud-config\nwrite_files:\n  - path: /etc/x\n    permissions: [1]\n", None);
    assert!(typed.errors[0].starts_with("user-data line 4 column 18: "), "{:?}", typed.errors);
    let meta = parse_all("instance-id: [", "", None);
    assert!(meta.errors[0].starts_with("meta-data line 1"), "{:?}", meta.errors);
    assert!(meta.instance_id_from_content);
    let net = parse_all("instance-id: n", "", Some("version: 2\nethernets:\n  eth0:\n    addresses: {a: 5}\n"));
    assert!(net.errors[0].starts_with("network-config line 4"), "{:?}", net.errors);
}

#[test]
fn unknown_keys_are_listed_with_their_path_and_file() {
    let p = parse_all(
        "instance-id: u\ndsmode: local\n",
        "#cloud-config\nhostname: h\ntimezone: Europe/Copenhagen\nntp:\n  ntp_client: chrony\n  servers: [a.example]\nwrite_files:\n  - path: /etc/x\n    defer: true\n    verbose: 1\n",
        Some("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n    wakeonlan: true\n"),
    );
    let mut u = p.unknown_keys.clone();
    u.sort();
    assert_eq!(
        u,
        [
            "meta-data: dsmode",
            "network-config: ethernets.eth0.wakeonlan",
            "user-data: ntp.ntp_client",
            "user-data: timezone",
            "user-data: write_files.0.verbose",
        ]
    );
}

#[test]
fn instance_ids_and_the_once_per_instance_rule() {
    let a = parse_all("instance-id: iid-abc\n", "", None);
    assert_eq!(a.instance_id, "iid-abc");
    // No instance-id: derived from the contents, stable for the same seed, new for another.
    let b1 = parse_all("local-hostname: x\n", "#cloud-config\n", None);
    let b2 = parse_all("local-hostname: x\n", "#cloud-config\n", None);
    let c = parse_all("local-hostname: y\n", "#cloud-config\n", None);
    assert!(b1.instance_id_from_content && b1.instance_id.starts_with("content-"));
    assert_eq!(b1.instance_id, b2.instance_id);
    assert_ne!(b1.instance_id, c.instance_id);
    assert!(should_apply(None, "iid-abc"), "first boot, or a RAM-only boot: no marker");
    assert!(!should_apply(Some("iid-abc\n"), "iid-abc"), "the marker names this instance");
    assert!(should_apply(Some("iid-abc\n"), "iid-def"), "a new instance-id is applied");
}

#[test]
fn ntp_and_network_from_the_seed() {
    let p = parse_all(
        "instance-id: n",
        "#cloud-config\nntp:\n  servers: [ntp.example.com, 192.168.23.2, 'bad name']\n  pools: ['0.company.pool.ntp.org']\n",
        Some("version: 2\nethernets:\n  id0:\n    match:\n      macaddress: '52:54:00:12:34:56'\n    addresses: [10.0.2.15/24]\n    gateway4: 10.0.2.2\n    nameservers:\n      addresses: [10.0.2.3]\n      search: [lightwhale.test]\n"),
    );
    let plan = plan_of(&p);
    assert_eq!(
        plan.ntp.as_deref().unwrap().lines().skip(1).collect::<Vec<_>>(),
        ["server ntp.example.com iburst", "server 192.168.23.2 iburst", "pool 0.company.pool.ntp.org iburst"]
    );
    assert_eq!(whats(&plan.refused), ["ntp server bad name"]);
    let conf = plan.dhcpcd.unwrap();
    assert!(conf.starts_with(DHCPCD));
    assert!(conf.contains("interface eth0\n  static ip_address=10.0.2.15/24\n  static routers=10.0.2.2\n  static domain_name_servers=10.0.2.3\n  static domain_search=lightwhale.test\n"), "{conf}");
    let off = plan_of(&parse_all("instance-id: n", "#cloud-config\nntp:\n  enabled: false\n  servers: [a.b]\n", None));
    assert_eq!(off.ntp, None);
}

#[test]
fn the_status_file_has_the_documented_shape() {
    let s = Status {
        seed: Some(SeedInfo { device: "vdb".into(), filesystem: "iso9660".into() }),
        instance_id: Some("iid-1".into()),
        applied: true,
        skipped: None,
        done: vec!["hostname web1".into()],
        unknown_keys: vec!["user-data: timezone".into()],
        refused: vec![Refused::new("user-data: runcmd", "why")],
        errors: vec![],
    };
    let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    for key in ["seed", "instance_id", "applied", "skipped", "done", "unknown_keys", "refused", "errors"] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["refused"][0]["what"], "user-data: runcmd");
    assert_eq!(v["seed"]["device"], "vdb");
}

/// cloud-init's write_files example as its module docs print it: base64 shortened with
/// `...`, which Python's decoder (and so cloud-init) skips.
#[test]
fn base64_is_read_as_cloud_init_reads_it() {
    let user_data = "#cloud-config\nwrite_files:\n- encoding: b64\n  content: CiMgVGhpcyBmaWxlIGNvbnRyb2xzIHRoZSBzdGF0ZSBvZiBTRUxpbnV4...\n  owner: root:root\n  path: /etc/sysconfig/selinux\n  permissions: '0644'\n";
    let p = parse_all("instance-id: b64", user_data, None);
    assert!(p.errors.is_empty() && p.refused.is_empty(), "{:?} {:?}", p.errors, p.refused);
    assert_eq!(p.user.files[0].content(), b"\n# This file controls the state of SELinux");
    // Line breaks, a last character with unused bits set ("Zh" is "f" with bits to spare),
    // missing padding: Python takes all three.
    assert_eq!(parse::python_b64decode("aGVs\nbG8g\r\nd29y bGQ=").unwrap(), b"hello world");
    assert_eq!(parse::python_b64decode("Zh==").unwrap(), b"f");
    assert_eq!(parse::python_b64decode("Zg").unwrap(), b"f");
    assert!(parse::python_b64decode("Z").is_err(), "one character is no byte");
}

/// meta-data's `public-keys` in the forms cloud-init reads (its seed example uses EC2's map
/// of names to lists ending in ''); they are op's keys, beside user-data's.
#[test]
fn public_keys_in_meta_data_are_ops_keys() {
    let ec2 =
        "instance-id: i-ec2\npublic-keys:\n  my-keypair: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMeta1 my-keypair, '']\n";
    let p =
        parse_all(ec2, "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser1 u]\n", None);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(
        p.user.op_keys,
        ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser1 u", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMeta1 my-keypair"]
    );
    let list = parse_all("instance-id: l\npublic-keys:\n  - ssh-ed25519 AAAA1 a\n  - ssh-ed25519 AAAA2 b\n", "", None);
    assert_eq!(list.user.op_keys, ["ssh-ed25519 AAAA1 a", "ssh-ed25519 AAAA2 b"]);
    let text = parse_all("instance-id: t\npublic-keys: |\n  ssh-ed25519 AAAA1 a\n  ssh-ed25519 AAAA2 b\n", "", None);
    assert_eq!(text.user.op_keys, ["ssh-ed25519 AAAA1 a", "ssh-ed25519 AAAA2 b"]);
    let keys = plan_of(&text).keys;
    assert_eq!(keys.len(), 1, "one key set, op's");
    assert_eq!(keys[0].user, "op");
}

/// Keys that need what a boot does not have are refused with a line each.
#[test]
fn what_a_seed_asks_that_cannot_be_done_is_named() {
    let user_data = "#cloud-config\nssh_import_id: [gh:someone]\nchpasswd:\n  users:\n    - {name: op, type: RANDOM}\n    - {name: deploy}\nusers:\n  - {name: svc, uid: 1500, homedir: /srv/svc}\n";
    let p = parse_all("instance-id: r", user_data, None);
    assert!(p.errors.is_empty() && p.unknown_keys.is_empty(), "{:?} {:?}", p.errors, p.unknown_keys);
    let refused: Vec<String> = p.refused.iter().map(|r| format!("{}: {}", r.what, r.why)).collect();
    for start in [
        "user-data: ssh_import_id: keys are not fetched",
        "user-data: chpasswd for op: RANDOM passwords",
        "user-data: chpasswd for deploy: no password given",
        "user-data: users svc uid: ",
        "user-data: users svc homedir: ",
    ] {
        assert!(refused.iter().any(|r| r.starts_with(start)), "{start}: {refused:?}");
    }
    assert!(p.user.passwords.is_empty());
}

/// PyYAML keeps the last of repeated keys; so does the seed reader (two of cloud-init's
/// own examples repeat a key).
#[test]
fn a_repeated_key_keeps_its_last_value() {
    let user_data = "#cloud-config\nhostname: first\nwrite_files:\n  - path: /etc/a\n    content: one\n    content: two\nhostname: second\n";
    let p = parse_all("instance-id: dup", user_data, None);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.user.hostname.as_deref(), Some("second"));
    assert_eq!(p.user.files[0].content(), b"two");
}

/// The account databases change only through the account code; sudo's files only as sudo
/// would read them.
#[test]
fn write_files_never_writes_the_account_databases_and_sudoers_only_as_sudo_reads_it() {
    let user_data = r#"#cloud-config
write_files:
  - path: /etc/shadow
    content: "root::1:0:99999:7:::"
  - {path: /etc/passwd, content: "x"}
  - {path: /etc/gshadow-, content: "x"}
  - {path: /etc/subuid, content: "x", append: true}
  - {path: /etc/shadowed, content: "not an account file"}
  - {path: /etc/sudoers.d/10-ops, content: "op ALL=(ALL) NOPASSWD:ALL\n"}
  - {path: /etc/sudoers.d/20-loose, content: "op ALL=(ALL) ALL\n", permissions: "0666"}
  - {path: /etc/sudoers.d/30-theirs, content: "op ALL=(ALL) ALL\n", owner: "op:op"}
  - {path: /etc/sudoers.d/90-lightwhale-nocloud, content: "op ALL=(ALL) ALL\n"}
"#;
    let p = parse_all("instance-id: i-acc", user_data, None);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let plan = plan_of(&p);
    let refused: Vec<String> = plan.refused.iter().map(|r| format!("{}: {}", r.what, r.why)).collect();
    for path in ["/etc/shadow", "/etc/passwd", "/etc/gshadow-", "/etc/subuid"] {
        let line = refused.iter().find(|r| r.starts_with(&format!("write_files {path}:"))).expect(path);
        assert!(line.contains("account database") && line.contains("chpasswd"), "{line}");
    }
    assert!(refused.iter().any(|r| r.starts_with("write_files /etc/sudoers.d/20-loose:") && r.contains("0440")));
    assert!(refused
        .iter()
        .any(|r| r.starts_with("write_files /etc/sudoers.d/30-theirs:") && r.contains("owned by root")));
    assert!(refused.iter().any(|r| r.starts_with("write_files /etc/sudoers.d/90-lightwhale-nocloud:")));
    let written: Vec<(&str, u32)> = plan.files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
    assert_eq!(written, [("/etc/shadowed", 0o644), ("/etc/sudoers.d/10-ops", 0o440)]);
    assert!(plan.accounts.is_none(), "nothing in this seed changes an account");
}

#[test]
fn sudo_reads_the_main_file_and_its_include_directory_only() {
    assert!(plan::is_sudoers("/etc/sudoers") && plan::is_sudoers("/etc/sudoers.d/x"));
    assert!(
        !plan::is_sudoers("/etc/sudoers.d/x/y")
            && !plan::is_sudoers("/etc/sudoers.dx")
            && !plan::is_sudoers("/etc/sudoers-")
    );
    assert!(plan::is_account_file("/etc/shadow-") && !plan::is_account_file("/etc/shadow.bak"));
}

mod on_disk {
    //! The plan carried out on a scratch root: owners, modes, symlinks refused.
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    pub(super) fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lw-nocloud-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["etc/skel", "etc/ssh/sshd_config.d", "home/op", "var/www", "usr/bin"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let a = image_accounts();
        for (f, t) in [
            ("passwd", &a.passwd),
            ("group", &a.group),
            ("shadow", &a.shadow),
            ("gshadow", &a.gshadow),
            ("subuid", &a.subuid),
            ("subgid", &a.subgid),
        ] {
            std::fs::write(dir.join("etc").join(f), t).unwrap();
        }
        std::fs::set_permissions(dir.join("etc/shadow"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(dir.join("etc/skel/.profile"), "PATH=/usr/bin\n").unwrap();
        std::fs::write(dir.join("etc/hosts"), HOSTS).unwrap();
        dir
    }

    #[test]
    #[ignore = "sets owners (root): run with `cargo xtask test --unit`"]
    fn the_example_on_a_scratch_root() {
        let dir = scratch("readme");
        let root = apply::Root { dir: &dir };
        let p = parse_all("instance-id: i", &example_user_data(), None);
        let acc = apply::read_accounts(&root);
        let fs = filesystems();
        let plan = plan::plan(
            &p,
            &Env {
                accounts: &acc,
                filesystems: &fs,
                data_root: "/mnt/lightwhale-data",
                hosts: HOSTS,
                dhcpcd: "",
                nics: &[],
                lastchg: 1,
            },
        );
        let errors = apply::apply(&plan, &root, &fs, "/mnt/lightwhale-data");
        // visudo is the host's; everything else must have worked.
        assert!(errors.iter().all(|e| e.contains("sudoers")), "{errors:?}");
        let meta = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap();
        assert_eq!(meta("home/deploy").mode() & 0o7777, 0o700);
        assert_eq!(meta("home/deploy").uid(), 1001);
        assert_eq!(std::fs::read_to_string(dir.join("home/deploy/.profile")).unwrap(), "PATH=/usr/bin\n");
        let keys = dir.join("home/deploy/.ssh/authorized_keys");
        assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&keys).unwrap().uid(), 1001);
        assert!(std::fs::read_to_string(&keys).unwrap().ends_with("ci@builder\n"));
        assert_eq!(meta("etc/shadow").mode() & 0o777, 0o640, "shadow keeps its mode");
        assert!(std::fs::read_to_string(dir.join("etc/passwd"))
            .unwrap()
            .contains("\ndeploy:x:1001:1001::/home/deploy:/bin/bash\n"));
        assert_eq!(std::fs::read_to_string(dir.join("etc/hostname")).unwrap(), "web1\n");
        assert!(std::fs::read_to_string(dir.join(plan::SSHD_DROP_IN.trim_start_matches('/')))
            .unwrap()
            .contains("PasswordAuthentication no"));
        let compose = dir.join("etc/lightwhale/compose/whoami/compose.yaml");
        assert!(std::fs::read_to_string(&compose).unwrap().contains("traefik/whoami"));
        assert!(std::fs::read_to_string(dir.join("etc/chrony/sources.d/nocloud.sources"))
            .unwrap()
            .contains("pool 2.debian.pool.ntp.org iburst"));
        // Applying the same keys again adds nothing.
        apply::apply(&plan, &root, &fs, "/mnt/lightwhale-data");
        assert_eq!(std::fs::read_to_string(&keys).unwrap().matches("ci@builder").count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[ignore = "sets owners (root): run with `cargo xtask test --unit`"]
    fn a_symlink_cannot_carry_a_file_out_of_the_writable_directories() {
        let dir = scratch("symlink");
        std::os::unix::fs::symlink(dir.join("usr/bin"), dir.join("etc/bin")).unwrap();
        std::os::unix::fs::symlink(dir.join("usr/bin/target"), dir.join("etc/link")).unwrap();
        let root = apply::Root { dir: &dir };
        let file = |path: &str| plan::FileWrite {
            path: path.into(),
            content: b"x".to_vec(),
            uid: 0,
            gid: 0,
            mode: 0o644,
            append: false,
        };
        let plan = Plan { files: vec![file("/etc/bin/evil"), file("/etc/link")], ..Default::default() };
        let errors = apply::apply(&plan, &root, &filesystems(), "/mnt/lightwhale-data");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("resolves to /usr/bin/evil"), "{errors:?}");
        assert!(!dir.join("usr/bin/evil").exists() && !dir.join("usr/bin/target").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

mod seed_files_on_disk {
    //! What the account and sudoers rules and the path check do on a real tree.
    use super::on_disk::scratch;
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn file(path: &str, content: &str, mode: u32, append: bool) -> plan::FileWrite {
        plan::FileWrite { path: path.into(), content: content.as_bytes().to_vec(), uid: 0, gid: 0, mode, append }
    }

    #[test]
    #[ignore = "sets owners (root): run with `cargo xtask test --unit`"]
    fn nothing_is_made_on_a_path_before_the_whole_of_it_is_allowed() {
        let dir = scratch("made");
        // As /var/run -> ../run: a link inside a writable directory to a place outside them.
        std::os::unix::fs::symlink("../usr", dir.join("etc/usr-link")).unwrap();
        std::os::unix::fs::symlink(dir.join("etc"), dir.join("home/etc-link")).unwrap();
        let root = apply::Root { dir: &dir };
        let plan = Plan {
            files: vec![
                file("/etc/usr-link/new/deeper/evil", "x", 0o644, false),
                file("/home/etc-link/shadow", "root::1:0:::::", 0o644, false),
            ],
            ..Default::default()
        };
        let shadow_before = std::fs::read(dir.join("etc/shadow")).unwrap();
        let errors = apply::apply(&plan, &root, &filesystems(), "/mnt/lightwhale-data");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("resolves to /usr/new/deeper/evil"), "{errors:?}");
        assert!(!dir.join("usr/new").exists(), "no directory was made outside the writable directories");
        assert!(errors[1].contains("resolves to /etc/shadow") && errors[1].contains("account database"), "{errors:?}");
        assert_eq!(std::fs::read(dir.join("etc/shadow")).unwrap(), shadow_before);
        assert_eq!(std::fs::metadata(dir.join("etc/shadow")).unwrap().mode() & 0o777, 0o640);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[ignore = "runs the host's visudo (package sudo, installed by `cargo xtask deps`): run with `cargo xtask test --unit`"]
    fn a_sudoers_file_from_a_seed_is_written_only_if_visudo_accepts_it() {
        let dir = scratch("sudoers");
        std::fs::create_dir_all(dir.join("etc/sudoers.d")).unwrap();
        let root = apply::Root { dir: &dir };
        let good = "op ALL=(ALL) NOPASSWD:ALL\n";
        let plan = Plan {
            files: vec![
                file("/etc/sudoers.d/10-ops", good, 0o440, false),
                file("/etc/sudoers.d/20-broken", "op ALL=(ALL NOPASSWD ALL\n", 0o440, false),
                file("/etc/sudoers.d/10-ops", "this is not sudoers\n", 0o440, true),
            ],
            ..Default::default()
        };
        let errors = apply::apply(&plan, &root, &filesystems(), "/mnt/lightwhale-data");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.contains("visudo rejects it") && e.contains("nothing written")), "{errors:?}");
        assert!(!dir.join("etc/sudoers.d/20-broken").exists());
        let ops = dir.join("etc/sudoers.d/10-ops");
        assert_eq!(std::fs::read_to_string(&ops).unwrap(), good, "a broken append leaves the file as it was");
        let meta = std::fs::metadata(&ops).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o440, 0));
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.join("etc/sudoers.d")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no check file is left behind: {leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

mod properties {
    //! No input, however broken, makes the parser or the plan panic.
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "hostname",
            "fqdn",
            "users",
            "groups",
            "write_files",
            "ssh_authorized_keys",
            "ssh_pwauth",
            "password",
            "chpasswd",
            "ntp",
            "name",
            "path",
            "content",
            "encoding",
            "permissions",
            "owner",
            "sudo",
            "list",
            "servers",
            "lock_passwd",
            "passwd",
            "append",
            "runcmd",
            "manage_etc_hosts",
            "b64",
            "gzip",
            "default",
        ])
        .prop_map(str::to_string)
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            key(),
            "[a-zA-Z0-9/ :.$!*&#|>-]{0,24}",
            Just("0644".to_string()),
            Just("~".to_string()),
            Just("[".to_string()),
            Just("*alias".to_string()),
        ]
    }

    /// YAML-looking text built from cloud-config keys, nested by indentation.
    fn yamlish() -> impl Strategy<Value = String> {
        prop::collection::vec((0usize..4, prop::bool::ANY, key(), scalar()), 0..24).prop_map(|lines| {
            let mut s = "#cloud-config\n".to_string();
            for (depth, dash, k, v) in lines {
                s.push_str(&"  ".repeat(depth));
                if dash {
                    s.push_str("- ");
                }
                s.push_str(&format!("{k}: {v}\n"));
            }
            s
        })
    }

    fn check(meta: &[u8], user: &[u8], net: &[u8]) {
        let p = parse::parse_seed(Some(meta), Some(user), Some(net), &mut salt);
        let _ = plan_of(&p);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes(meta in prop::collection::vec(any::<u8>(), 0..256), user in prop::collection::vec(any::<u8>(), 0..512), net in prop::collection::vec(any::<u8>(), 0..256)) {
            check(&meta, &user, &net);
        }

        #[test]
        fn any_text_after_the_header(body in "\\PC{0,400}") {
            check(b"instance-id: p", format!("#cloud-config\n{body}").as_bytes(), body.as_bytes());
        }

        #[test]
        fn cloud_config_shaped_text(user in yamlish(), net in yamlish()) {
            check(b"instance-id: p\nlocal-hostname: h", user.as_bytes(), net.replacen("#cloud-config", "version: 2", 1).as_bytes());
        }
    }
}
