//! `lightwhale seed check DIR`: a cloud-init NoCloud seed read and planned by the boot's own
//! code, against this machine (a Lightwhale machine's accounts, init configuration and
//! NICs) or, on another host, against a fresh Lightwhale image's. Nothing is written.

use lightwhale_nocloud::{self as nocloud, apply, plan, Check};
use lightwhale_types::accounts::Accounts;
use lightwhale_types::config::{self, Filesystems};
use std::path::Path;

/// The base module's configuration as the image carries it (for hosts that are not
/// Lightwhale machines).
const BASE_INIT_RON: &str = include_str!("../../modules/base/init.ron");

/// A fresh image's regular account and the groups it is in; the image's system accounts
/// come from Debian's packages and are only known on a Lightwhale machine.
fn fresh_image_accounts() -> Accounts {
    Accounts {
        passwd: "root:x:0:0:root:/root:/bin/bash\nop:x:1000:1000::/home/op:/bin/bash\n".into(),
        group: "root:x:0:\nsudo:x:27:op\nusers:x:100:\ndocker:x:990:op\nop:x:1000:\n".into(),
        shadow: "root:*:1:0:99999:7:::\nop:!:1:0:99999:7:::\n".into(),
        gshadow: "root:*::\nsudo:*::op\nusers:*::\ndocker:!::op\nop:!::\n".into(),
        subuid: "op:100000:65536\n".into(),
        subgid: "op:100000:65536\n".into(),
    }
}

/// What the check is planned against, and a line that says which.
pub struct Machine {
    pub accounts: Accounts,
    pub filesystems: Filesystems,
    pub hosts: String,
    pub dhcpcd: String,
    pub nics: Vec<nocloud::network::Nic>,
    pub against: String,
}

impl Machine {
    /// This machine when it runs Lightwhale, else a fresh image.
    pub fn here() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let nics = nocloud::nics(Path::new("/sys/class/net"));
        let names = nics.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
        let config_dir = Path::new(config::CONFIG_DIR);
        if let (true, Ok(cfg)) = (Path::new(lightwhale_types::release::PATH).is_file(), config::load(config_dir)) {
            return Machine {
                accounts: apply::read_accounts(&apply::Root { dir: Path::new("/") }),
                filesystems: cfg.filesystems,
                hosts: read("/etc/hosts"),
                dhcpcd: read("/etc/dhcpcd.conf"),
                nics,
                against: format!("this Lightwhale machine (its accounts, writable directories and NICs: {names})"),
            };
        }
        let filesystems = config::parse_module(BASE_INIT_RON, Path::new("modules/base/init.ron"))
            .map(|m| m.filesystems)
            .unwrap_or_default();
        Machine {
            accounts: fresh_image_accounts(),
            filesystems,
            hosts: "127.0.0.1\tlocalhost\n127.0.1.1\tlightwhale\n".into(),
            dhcpcd: String::new(),
            nics,
            against: format!("a fresh Lightwhale image (op's account, the image's writable directories), with this host's NICs: {names}"),
        }
    }
}

/// Checks the seed in `dir` against `m`.
pub fn check(dir: &Path, m: &Machine) -> Check {
    nocloud::check(
        dir,
        &plan::Env {
            accounts: &m.accounts,
            filesystems: &m.filesystems,
            data_root: lightwhale_types::constants::DATA_MOUNT_POINT,
            hosts: &m.hosts,
            dhcpcd: &m.dhcpcd,
            nics: &m.nics,
            lastchg: 1,
        },
    )
}

/// Pure: the report a person reads.
pub fn render(dir: &Path, c: &Check, against: &str) -> String {
    let mut out = format!("seed {}: instance-id {}\nplanned against {against}\n", dir.display(), c.instance_id);
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            out.push_str(&format!("\n{title}:\n"));
            for l in lines {
                out.push_str(&format!("  {l}\n"));
            }
        }
    };
    section("the boot would", c.done.clone());
    section("refused (not done, and why)", c.refused.iter().map(|r| format!("{}: {}", r.what, r.why)).collect());
    section("ignored (keys Lightwhale does not read)", c.unknown_keys.clone());
    section("errors (the file named is left out)", c.errors.clone());
    out.push_str(&format!(
        "\n{} changes, {} refused, {} ignored, {} errors\n",
        c.done.len(),
        c.refused.len(),
        c.unknown_keys.len(),
        c.errors.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str, user: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lw-seed-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("meta-data"), "instance-id: web-1\nlocal-hostname: web1\n").unwrap();
        std::fs::write(dir.join("user-data"), user).unwrap();
        dir
    }

    fn fresh() -> Machine {
        let filesystems = config::parse_module(BASE_INIT_RON, Path::new("base")).unwrap().filesystems;
        Machine {
            accounts: fresh_image_accounts(),
            filesystems,
            hosts: String::new(),
            dhcpcd: String::new(),
            nics: vec![],
            against: "a fresh image".into(),
        }
    }

    #[test]
    fn a_seed_is_reported_as_the_boot_would_apply_it() {
        let dir = seed(
            "ok",
            "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK op@laptop]\nruncmd: [reboot]\ntimezone: UTC\nwrite_files:\n  - {path: /etc/shadow, content: x}\n  - {path: /etc/motd, content: hi}\n",
        );
        let c = check(&dir, &fresh());
        std::fs::remove_dir_all(&dir).unwrap();
        let text = render(Path::new("/seed"), &c, "a fresh image");
        assert!(c.errors.is_empty(), "{text}");
        assert!(text.contains("instance-id web-1"), "{text}");
        assert!(text.contains("hostname web1"), "{text}");
        assert!(text.contains("wrote /etc/motd (2 bytes)"), "{text}");
        assert!(text.contains("user-data: runcmd: Lightwhale runs no scripts"), "{text}");
        assert!(text.contains("write_files /etc/shadow: an account database"), "{text}");
        assert!(text.contains("ignored (keys Lightwhale does not read):\n  user-data: timezone"), "{text}");
    }

    #[test]
    fn an_error_names_the_file_line_and_column() {
        let dir = seed("bad", "#cloud-config\nusers:\n  - name: a\n   - name: b\n");
        let c = check(&dir, &fresh());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.errors.len(), 1, "{c:?}");
        assert!(c.errors[0].starts_with("user-data line 4 column "), "{:?}", c.errors);
    }
}
