//! The machine's name. Unless someone set one (`setup-hostname`, cloud-init: both write
//! /etc/hostname, which lives on the persistence disk), it is derived from the machine id,
//! so every machine gets its own (`lightwhale-1a2b3c`) and keeps it across reboots when
//! /etc persists. /etc/hosts names it too: `sudo` warns when it cannot resolve the host.

pub const HOSTNAME_FILE: &str = "/etc/hostname";
pub const HOSTS_FILE: &str = "/etc/hosts";
/// The address Debian gives the machine's own name in /etc/hosts.
const SELF_ADDRESS: &str = "127.0.1.1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHostname {
    #[error("a host name cannot be empty")]
    Empty,
    #[error("{0:?} is longer than 253 characters")]
    TooLong(String),
    #[error("{0:?}: each dot-separated part must be 1 to 63 characters")]
    BadLabelLength(String),
    #[error("{0:?}: only letters, digits and '-' are allowed, and a part cannot start or end with '-'")]
    BadCharacter(String),
    #[error("{0:?}: the last part cannot be all digits (it would look like an IP address)")]
    Numeric(String),
}

/// Pure: checks an RFC 1123 host name (dot-separated labels of letters, digits and '-',
/// 1-63 characters each, 253 in all) and returns it in lower case.
pub fn validate(name: &str) -> Result<String, InvalidHostname> {
    let name = name.trim();
    if name.is_empty() {
        return Err(InvalidHostname::Empty);
    }
    if name.len() > 253 {
        return Err(InvalidHostname::TooLong(name.into()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(InvalidHostname::BadLabelLength(name.into()));
        }
        let ok_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Err(InvalidHostname::BadCharacter(name.into()));
        }
    }
    if name.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(InvalidHostname::Numeric(name.into()));
    }
    Ok(name.to_ascii_lowercase())
}

/// Pure: the default name for a machine id (32 hex digits): `lightwhale-` and its first six.
pub fn default_for(machine_id: &str) -> String {
    let hex: String = machine_id.trim().chars().filter(|c| c.is_ascii_hexdigit()).take(6).collect();
    if hex.len() == 6 {
        format!("lightwhale-{}", hex.to_ascii_lowercase())
    } else {
        "lightwhale".into()
    }
}

/// Pure: the name to use: /etc/hostname's if it holds a valid one, else the default.
pub fn choose(hostname_file: Option<&str>, machine_id: &str) -> String {
    hostname_file
        .and_then(|t| t.lines().next())
        .and_then(|l| validate(l).ok())
        .unwrap_or_else(|| default_for(machine_id))
}

/// Pure: /etc/hosts with the machine's own line set to `127.0.1.1 <fqdn> <short>` (or
/// `127.0.1.1 <short>`, Debian's convention); every other line is kept as it is. The
/// NoCloud seed (its hostname and fqdn) and the boot (below) both write it this way.
pub fn hosts_with(hosts: &str, short: &str, fqdn: Option<&str>) -> String {
    let own = match fqdn {
        Some(f) if f != short => format!("{SELF_ADDRESS}\t{f} {short}"),
        _ => format!("{SELF_ADDRESS}\t{short}"),
    };
    let mut out = String::new();
    let mut replaced = false;
    for line in hosts.lines() {
        if line.split_whitespace().next() == Some(SELF_ADDRESS) {
            if !replaced {
                out.push_str(&own);
                out.push('\n');
                replaced = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&own);
        out.push('\n');
    }
    out
}

/// Pure: /etc/hosts for the name the boot chose. A 127.0.1.1 line that already names it is
/// kept as it is (it may carry the FQDN a NoCloud seed gave); otherwise the line is set
/// to `name` and, for a dotted name, its short form.
pub fn hosts_for(hosts: &str, name: &str) -> String {
    let names_it = hosts.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(SELF_ADDRESS) && words.any(|w| w == name)
    });
    if names_it {
        return hosts.to_string();
    }
    let short = name.split('.').next().unwrap_or(name);
    hosts_with(hosts, short, Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123_names() {
        assert_eq!(validate("Web-01").unwrap(), "web-01");
        assert_eq!(validate("db.example.com").unwrap(), "db.example.com");
        assert_eq!(validate(" node7 \n").unwrap(), "node7");
        assert_eq!(validate(""), Err(InvalidHostname::Empty));
        assert!(matches!(validate("-web"), Err(InvalidHostname::BadCharacter(_))));
        assert!(matches!(validate("web_01"), Err(InvalidHostname::BadCharacter(_))));
        assert!(matches!(validate("a..b"), Err(InvalidHostname::BadLabelLength(_))));
        assert!(matches!(validate(&"a".repeat(64)), Err(InvalidHostname::BadLabelLength(_))));
        assert!(matches!(validate(&["a"; 130].join(".")), Err(InvalidHostname::TooLong(_))));
        assert!(matches!(validate("10.0.0.1"), Err(InvalidHostname::Numeric(_))));
        assert!(validate("3com").is_ok());
    }

    #[test]
    fn default_comes_from_the_machine_id() {
        assert_eq!(default_for("1A2B3C4D5E6F708192a3b4c5d6e7f809\n"), "lightwhale-1a2b3c");
        assert_eq!(default_for(""), "lightwhale");
        assert_eq!(choose(None, "0123456789abcdef0123456789abcdef"), "lightwhale-012345");
        assert_eq!(choose(Some("web01\n"), "0123456789abcdef0123456789abcdef"), "web01");
        // A broken /etc/hostname does not give the machine a broken name.
        assert_eq!(choose(Some("bad name\n"), "0123456789abcdef0123456789abcdef"), "lightwhale-012345");
    }

    #[test]
    fn hosts_keeps_everything_but_the_own_line() {
        let image = "127.0.0.1\tlocalhost\n127.0.1.1\tlightwhale\n::1\t\tlocalhost ip6-localhost ip6-loopback\n";
        assert_eq!(
            hosts_for(image, "web01.example.com"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tweb01.example.com web01\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
        );
        assert_eq!(
            hosts_for("127.0.0.1 localhost\n10.0.0.5 db\n", "n1"),
            "127.0.0.1 localhost\n10.0.0.5 db\n127.0.1.1\tn1\n"
        );
        assert_eq!(hosts_for(&hosts_for(image, "n1"), "n1"), hosts_for(image, "n1"));
    }

    #[test]
    fn a_seeded_fqdn_survives_the_boot() {
        // The seed named the host seeded.example.com; /etc/hostname says "seeded".
        let seeded = "127.0.0.1\tlocalhost\n127.0.1.1\tseeded.example.com seeded\n";
        assert_eq!(hosts_for(seeded, "seeded"), seeded);
        // A different name still replaces the line.
        assert_eq!(hosts_for(seeded, "other"), "127.0.0.1\tlocalhost\n127.0.1.1\tother\n");
    }
}
