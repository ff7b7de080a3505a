//! `network-config` version 2 (netplan's format, as cloud-init reads it) for wired NICs:
//! static addresses, a default route and DNS, rendered as `interface` blocks with `static`
//! values in /etc/dhcpcd.conf. DHCP stays the default for every NIC the seed does not name.
//!
//! Why dhcpcd's own static configuration rather than `ip` commands at boot: dhcpcd runs on
//! every wired NIC anyway, so an address set beside it would race with its DHCP on the same
//! interface and with its rewriting of /etc/resolv.conf. Given `static ip_address`, dhcpcd
//! asks no DHCP server for that NIC, configures the address, the route and resolv.conf
//! itself, redoes it when the link comes back, and the "network online" condition Docker
//! waits for (a default route) works unchanged. dhcpcd.conf has no include directive, so
//! the seed's blocks go at its end between two marker lines and are replaced as a whole
//! when a new instance brings a new network-config.

use crate::schema::Strings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The marker lines around the seed's part of /etc/dhcpcd.conf.
pub const BEGIN: &str = "# BEGIN lightwhale nocloud network-config: edits here are replaced by the next seed";
pub const END: &str = "# END lightwhale nocloud network-config";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub version: Option<u32>,
    /// cloud-init also accepts the whole thing under a `network:` key.
    pub network: Option<Box<RawConfig>>,
    pub ethernets: BTreeMap<String, RawEthernet>,
    pub renderer: Option<String>,
    pub wifis: Option<serde::de::IgnoredAny>,
    pub bonds: Option<serde::de::IgnoredAny>,
    pub bridges: Option<serde::de::IgnoredAny>,
    pub vlans: Option<serde::de::IgnoredAny>,
    /// Version 1's list of interfaces.
    pub config: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMatch {
    pub macaddress: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RawEthernet {
    #[serde(rename = "match")]
    pub matching: Option<RawMatch>,
    pub set_name: Option<String>,
    pub dhcp4: Option<bool>,
    pub dhcp6: Option<bool>,
    /// A list, or one address as a scalar (netplan reads both).
    pub addresses: Strings,
    pub gateway4: Option<String>,
    pub gateway6: Option<String>,
    pub routes: Vec<RawRoute>,
    pub nameservers: RawNameservers,
    pub mtu: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRoute {
    pub to: String,
    pub via: String,
    pub metric: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawNameservers {
    pub addresses: Strings,
    pub search: Strings,
}

/// One `ethernets:` entry as the init applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ethernet {
    /// The key under `ethernets:`; also the interface name when there is no `match:`.
    pub id: String,
    pub match_mac: Option<String>,
    pub match_name: Option<String>,
    pub dhcp4: Option<bool>,
    pub addresses: Vec<String>,
    pub gateway4: Option<String>,
    pub gateway6: Option<String>,
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub mtu: Option<u32>,
}

/// What the parser made of network-config, and what it refused on the way.
#[derive(Debug, Default)]
pub struct Parsed {
    pub ethernets: Vec<Ethernet>,
    pub refused: Vec<(String, String)>,
}

fn is_default(to: &str) -> bool {
    matches!(to, "default" | "0.0.0.0/0" | "::/0")
}

/// Pure: `192.168.1.10/255.255.255.0` (a dotted netmask, as cloud-init's NoCloud docs
/// write it) as `192.168.1.10/24`; anything else as it is.
pub fn prefix_from_netmask(addr: &str) -> String {
    let Some((ip, mask)) = addr.split_once('/') else { return addr.to_string() };
    let (Ok(_), Ok(mask)) = (ip.parse::<std::net::Ipv4Addr>(), mask.parse::<std::net::Ipv4Addr>()) else {
        return addr.to_string();
    };
    let bits = u32::from(mask);
    // A netmask is ones, then zeros: its complement plus one is a power of two.
    if (!bits).wrapping_add(1) & !bits != 0 {
        return addr.to_string();
    }
    format!("{ip}/{}", bits.count_ones())
}

/// Pure: the raw YAML types to the entries the init applies, with what it cannot do.
pub fn from_raw(raw: RawConfig) -> Result<Parsed, String> {
    let raw = match raw.network {
        Some(inner) => *inner,
        None => raw,
    };
    match raw.version {
        Some(2) => {}
        Some(1) => return Err("network-config version 1 is not supported; write version 2 (netplan style)".into()),
        Some(v) => return Err(format!("network-config version {v} is not supported; write version 2")),
        None => return Err("network-config has no `version: 2`".into()),
    }
    let mut out = Parsed::default();
    for (key, why) in [
        ("wifis", raw.wifis.is_some()),
        ("bonds", raw.bonds.is_some()),
        ("bridges", raw.bridges.is_some()),
        ("vlans", raw.vlans.is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| *present)
    .map(|(k, _)| (k, "only `ethernets` is supported (wired NICs); Docker makes its own bridges"))
    {
        out.refused.push((format!("network-config: {key}"), why.to_string()));
    }
    for (id, e) in raw.ethernets {
        let mut eth = Ethernet {
            id: id.clone(),
            match_mac: e.matching.as_ref().and_then(|m| m.macaddress.clone()).map(|m| m.to_ascii_lowercase()),
            match_name: e.matching.as_ref().and_then(|m| m.name.clone()),
            dhcp4: e.dhcp4,
            addresses: e.addresses.0.iter().map(|a| prefix_from_netmask(a)).collect(),
            gateway4: e.gateway4,
            gateway6: e.gateway6,
            nameservers: e.nameservers.addresses.0,
            search: e.nameservers.search.0,
            mtu: e.mtu,
        };
        if e.set_name.is_some() {
            out.refused.push((
                format!("network-config: ethernets.{id}.set-name"),
                "interfaces keep the kernel's names (there is no udev to rename them)".into(),
            ));
        }
        if e.dhcp6 == Some(false) {
            out.refused.push((
                format!("network-config: ethernets.{id}.dhcp6"),
                "IPv6 autoconfiguration stays on; only static IPv6 addresses can be added".into(),
            ));
        }
        for r in e.routes {
            if is_default(&r.to) {
                let slot = if r.via.contains(':') { &mut eth.gateway6 } else { &mut eth.gateway4 };
                slot.get_or_insert(r.via);
            } else {
                out.refused.push((
                    format!("network-config: ethernets.{id}.routes to {}", r.to),
                    "only default routes are supported".into(),
                ));
            }
        }
        out.ethernets.push(eth);
    }
    Ok(out)
}

/// A wired NIC present on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub mac: String,
}

/// `*` and `?` globs, as netplan's `match: name:` allows.
fn glob(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), name.as_bytes())
}

/// The NICs an entry applies to.
pub fn resolve<'a>(e: &Ethernet, nics: &'a [Nic]) -> Vec<&'a Nic> {
    nics.iter()
        .filter(|n| {
            let by_mac = e.match_mac.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&n.mac));
            let by_name = match (&e.match_name, &e.match_mac) {
                (Some(p), _) => glob(p, &n.name),
                (None, Some(_)) => true,
                (None, None) => n.name == e.id,
            };
            by_mac && by_name
        })
        .collect()
}

fn is_v6(addr: &str) -> bool {
    addr.contains(':')
}

fn valid_ip(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok()
}

fn valid_cidr(addr: &str) -> bool {
    match addr.split_once('/') {
        Some((ip, len)) => {
            let max = if is_v6(ip) { 128 } else { 32 };
            valid_ip(ip) && len.parse::<u8>().is_ok_and(|l| l <= max)
        }
        None => false,
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Pure: the dhcpcd.conf block for the entries, given the NICs present, with every part
/// that cannot be applied named in `refused` as (what, why).
pub fn render(ethernets: &[Ethernet], nics: &[Nic]) -> (String, Vec<(String, String)>) {
    let mut refused = Vec::new();
    let mut block = String::new();
    for e in ethernets {
        let what = format!("network-config: ethernets.{}", e.id);
        let targets = resolve(e, nics);
        if targets.is_empty() {
            let present: Vec<String> = nics.iter().map(|n| format!("{} {}", n.name, n.mac)).collect();
            refused.push((what, format!("matches no network interface (present: {})", present.join(", "))));
            continue;
        }
        // An address (and the route through it) belongs to one NIC; the rest to every match.
        let mut addressed = Vec::new();
        let mut lines = Vec::new();
        let (v4, v6): (Vec<&String>, Vec<&String>) = e.addresses.iter().partition(|a| !is_v6(a));
        for a in e.addresses.iter().filter(|a| !valid_cidr(a)) {
            refused.push((
                format!("{what}.addresses {a}"),
                "not an address with a prefix length, like 192.168.1.10/24".into(),
            ));
        }
        let v4: Vec<&String> = v4.into_iter().filter(|a| valid_cidr(a)).collect();
        let v6: Vec<&String> = v6.into_iter().filter(|a| valid_cidr(a)).collect();
        for extra in v4.iter().skip(1).chain(v6.iter().skip(1)) {
            refused.push((
                format!("{what}.addresses {extra}"),
                "dhcpcd sets one static address per family and NIC".into(),
            ));
        }
        if let Some(a) = v4.first() {
            addressed.push(format!("static ip_address={a}"));
        } else if e.dhcp4 == Some(false) {
            lines.push("noipv4".into());
        }
        if let Some(a) = v6.first() {
            addressed.push(format!("static ip6_address={a}"));
        }
        for g in [&e.gateway4, &e.gateway6].into_iter().flatten().filter(|g| !valid_ip(g)) {
            refused.push((format!("{what} gateway {g}"), "not an IP address".into()));
        }
        if let Some(g) = e.gateway4.as_ref().filter(|g| valid_ip(g) && !is_v6(g)) {
            addressed.push(format!("static routers={g}"));
        }
        if let Some(g) = e.gateway6.as_ref().filter(|g| valid_ip(g) && is_v6(g)) {
            refused.push((
                format!("{what} IPv6 gateway {g}"),
                "the IPv6 default route comes from router advertisements".into(),
            ));
        }
        let dns: Vec<&String> = e.nameservers.iter().filter(|a| valid_ip(a)).collect();
        for a in e.nameservers.iter().filter(|a| !valid_ip(a)) {
            refused.push((format!("{what}.nameservers {a}"), "not an IP address".into()));
        }
        if !dns.is_empty() {
            lines.push(format!("static domain_name_servers={}", join(&dns)));
        }
        let search: Vec<&String> = e.search.iter().filter(|d| valid_domain(d)).collect();
        for d in e.search.iter().filter(|d| !valid_domain(d)) {
            refused.push((format!("{what}.nameservers.search {d}"), "not a domain name".into()));
        }
        if !search.is_empty() {
            lines.push(format!("static domain_search={}", join(&search)));
        }
        if let Some(mtu) = e.mtu {
            if (576..=9216).contains(&mtu) {
                lines.push(format!("static interface_mtu={mtu}"));
            } else {
                refused.push((format!("{what}.mtu {mtu}"), "outside 576-9216".into()));
            }
        }
        if let [first, others @ ..] = targets.as_slice() {
            if !addressed.is_empty() && !others.is_empty() {
                let names: Vec<&str> = others.iter().map(|n| n.name.as_str()).collect();
                refused.push((
                    format!("{what}.addresses"),
                    format!(
                        "it matches {} NICs, and an address is one machine's: it goes on {} only; {} get the entry's other settings",
                        targets.len(),
                        first.name,
                        names.join(", ")
                    ),
                ));
            }
        }
        for (i, nic) in targets.iter().enumerate() {
            let own: Vec<&String> =
                if i == 0 { addressed.iter().chain(&lines).collect() } else { lines.iter().collect() };
            if own.is_empty() {
                continue;
            }
            block.push_str(&format!("interface {}\n", nic.name));
            for l in own {
                block.push_str(&format!("  {l}\n"));
            }
        }
    }
    (block, refused)
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// Pure: `conf` with the seed's block (between BEGIN and END) replaced by `block`, or
/// removed when `block` is empty.
pub fn splice(conf: &str, block: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in conf.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !block.is_empty() {
        out.push_str(BEGIN);
        out.push('\n');
        out.push_str(block);
        out.push_str(END);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nics() -> Vec<Nic> {
        vec![
            Nic { name: "eth0".into(), mac: "52:54:00:12:34:56".into() },
            Nic { name: "eth1".into(), mac: "52:54:00:ab:cd:ef".into() },
        ]
    }

    fn parse(yaml: &str) -> Result<Parsed, String> {
        from_raw(serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?)
    }

    #[test]
    fn a_static_nic_matched_by_mac() {
        let p = parse(
            "version: 2
ethernets:
  lan:
    match:
      macaddress: '52:54:00:AB:CD:EF'
    dhcp4: false
    addresses: [192.168.10.5/24, 'fd00::5/64']
    routes:
      - to: default
        via: 192.168.10.1
    nameservers:
      addresses: [192.168.10.1, 9.9.9.9]
      search: [lab.example]
",
        )
        .unwrap();
        assert!(p.refused.is_empty(), "{:?}", p.refused);
        let (block, refused) = render(&p.ethernets, &nics());
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            block,
            "interface eth1
  static ip_address=192.168.10.5/24
  static ip6_address=fd00::5/64
  static routers=192.168.10.1
  static domain_name_servers=192.168.10.1 9.9.9.9
  static domain_search=lab.example
"
        );
    }

    #[test]
    fn the_network_wrapper_gateway4_and_names() {
        let p = parse(
            "network:
  version: 2
  ethernets:
    eth0:
      addresses: [10.0.0.9/8]
      gateway4: 10.0.0.1
    all:
      match: {name: 'eth*'}
      mtu: 1400
",
        )
        .unwrap();
        let (block, refused) = render(&p.ethernets, &nics());
        assert!(refused.is_empty(), "{refused:?}");
        assert!(
            block
                .contains("interface eth0\n  static interface_mtu=1400\ninterface eth1\n  static interface_mtu=1400\n"),
            "{block}"
        );
        assert!(
            block.contains("interface eth0\n  static ip_address=10.0.0.9/8\n  static routers=10.0.0.1\n"),
            "{block}"
        );
    }

    /// A glob that matches several NICs gives a static address to the first of them only
    /// (by name), says so, and gives the others the rest of the entry.
    #[test]
    fn a_static_address_matched_by_a_glob_goes_on_one_nic() {
        let p = parse(
            "version: 2
ethernets:
  lan:
    match: {name: 'eth*'}
    addresses: [192.168.1.10/24]
    gateway4: 192.168.1.1
    nameservers: {addresses: [192.168.1.1]}
",
        )
        .unwrap();
        let (block, refused) = render(&p.ethernets, &nics());
        assert_eq!(
            block,
            "interface eth0\n  static ip_address=192.168.1.10/24\n  static routers=192.168.1.1\n  static domain_name_servers=192.168.1.1\ninterface eth1\n  static domain_name_servers=192.168.1.1\n"
        );
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].1.contains("goes on eth0 only") && refused[0].1.contains("eth1"), "{refused:?}");
        assert_eq!(block.matches("192.168.1.10").count(), 1, "one address, once");
    }

    /// Forms cloud-init's network docs show: a dotted netmask, scalars where lists go.
    #[test]
    fn a_dotted_netmask_and_scalars_for_lists_are_read() {
        let p = parse(
            "version: 2
ethernets:
  eth0:
    addresses: 192.168.1.10/255.255.255.0
    gateway4: 192.168.1.254
    nameservers:
      addresses: 8.8.8.8
      search: example.com
",
        )
        .unwrap();
        let (block, refused) = render(&p.ethernets, &nics());
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            block,
            "interface eth0\n  static ip_address=192.168.1.10/24\n  static routers=192.168.1.254\n  static domain_name_servers=8.8.8.8\n  static domain_search=example.com\n"
        );
        assert_eq!(prefix_from_netmask("10.0.0.1/255.0.0.0"), "10.0.0.1/8");
        assert_eq!(prefix_from_netmask("10.0.0.1/0.0.0.0"), "10.0.0.1/0");
        assert_eq!(prefix_from_netmask("10.0.0.1/255.0.255.0"), "10.0.0.1/255.0.255.0", "not a netmask: refused later");
        assert_eq!(prefix_from_netmask("fd00::1/64"), "fd00::1/64");
    }

    #[test]
    fn what_cannot_be_done_is_named() {
        assert!(parse("version: 1\nconfig: []\n").unwrap_err().contains("version 1"));
        assert!(parse("ethernets: {}\n").unwrap_err().contains("version: 2"));
        let p = parse(
            "version: 2
wifis: {}
ethernets:
  ghost:
    match: {macaddress: '00:11:22:33:44:55'}
    addresses: [10.1.1.1/24]
  eth0:
    set-name: lan0
    addresses: [10.1.1.2, 10.1.1.3/24, 10.1.1.4/24]
    routes: [{to: 10.9.0.0/16, via: 10.1.1.1}]
    nameservers: {addresses: [dns.example]}
",
        )
        .unwrap();
        let what: Vec<&str> = p.refused.iter().map(|(w, _)| w.as_str()).collect();
        assert!(what.contains(&"network-config: wifis"), "{what:?}");
        assert!(what.contains(&"network-config: ethernets.eth0.set-name"));
        assert!(what.contains(&"network-config: ethernets.eth0.routes to 10.9.0.0/16"));
        let (block, refused) = render(&p.ethernets, &nics());
        let what: Vec<String> = refused.iter().map(|(w, why)| format!("{w}: {why}")).collect();
        assert!(
            what.iter().any(|w| w.starts_with(
                "network-config: ethernets.ghost: matches no network interface (present: eth0 52:54:00:12:34:56"
            )),
            "{what:?}"
        );
        assert!(what.iter().any(|w| w.contains("addresses 10.1.1.2: not an address with a prefix")));
        assert!(what.iter().any(|w| w.contains("addresses 10.1.1.4/24: dhcpcd sets one")));
        assert!(what.iter().any(|w| w.contains("nameservers dns.example")));
        assert_eq!(block, "interface eth0\n  static ip_address=10.1.1.3/24\n");
    }

    #[test]
    fn splice_replaces_the_block_and_keeps_the_rest() {
        let base = "hostname\nnoarp\n";
        let once = splice(base, "interface eth0\n  static ip_address=10.0.0.2/24\n");
        assert_eq!(once, format!("hostname\nnoarp\n{BEGIN}\ninterface eth0\n  static ip_address=10.0.0.2/24\n{END}\n"));
        let twice = splice(&once, "interface eth1\n  noipv4\n");
        assert_eq!(twice.matches(BEGIN).count(), 1);
        assert!(twice.contains("eth1") && !twice.contains("eth0"));
        assert_eq!(splice(&twice, ""), base);
    }

    #[test]
    fn globs() {
        assert!(glob("en*", "enp0s3"));
        assert!(glob("eth?", "eth1"));
        assert!(!glob("eth?", "eth10"));
        assert!(glob("*", "x"));
        assert!(!glob("wl*", "eth0"));
    }
}
