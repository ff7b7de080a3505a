//! Wi-Fi: what `setup-wifi` checks and writes, and how `lightwhale-wifi` keeps one
//! wpa_supplicant running for every Wi-Fi interface. The configuration lives in the
//! persisted /etc; its existence is what turns the `wifi` service on (modules/wifi/init.ron).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// wpa_supplicant's configuration, written by `setup-wifi` (mode 600). The `wifi` service
/// runs only while it exists (`only_if_exists` in modules/wifi/init.ron).
pub const CONFIG: &str = "/etc/wpa_supplicant/lightwhale.conf";
/// The regulatory database cfg80211 loads (wireless-regdb): the country codes it knows.
pub const REGULATORY_DB: &str = "/lib/firmware/regulatory.db";
/// Where the kernel lists network interfaces.
pub const SYS_CLASS_NET: &str = "/sys/class/net";
pub const WPA_SUPPLICANT: &str = "/usr/sbin/wpa_supplicant";
pub const IW: &str = "/usr/sbin/iw";
/// wpa_supplicant's control sockets (`wpa_cli -i wlan0 status` for people in group sudo).
pub const CONTROL_DIR: &str = "/run/wpa_supplicant";

/// Why `setup-wifi` refuses its input. Each is one line that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("missing --ssid: give the network's name, e.g. `setup-wifi --ssid home --password PASSWORD --country DE`")]
    MissingSsid,
    #[error("the SSID must be 1 to 32 bytes long; {0:?} is {1}")]
    SsidLength(String, usize),
    #[error("missing --password: give the network's WPA2 password (8 to 63 characters)")]
    MissingPassword,
    #[error("the password must be 8 to 63 characters (WPA2), or 64 hex digits; it has {0}")]
    PasswordLength(usize),
    #[error("the password may only contain printable ASCII characters (WPA2 passphrases do)")]
    PasswordCharacters,
    #[error("missing --country: give the two-letter code of the country the machine is in (DE, US, GB, ...), which decides the allowed channels and power")]
    MissingCountry,
    #[error("unknown country code {0:?}: use the two-letter ISO 3166 code of the country the machine is in (DE, US, GB, ...)")]
    UnknownCountry(String),
    #[error("cannot read the list of countries from {0}: {1}")]
    NoRegulatoryDb(String, String),
}

/// Pure: the SSID as bytes, checked.
pub fn ssid(value: Option<&str>) -> Result<Vec<u8>, Invalid> {
    let s = value.ok_or(Invalid::MissingSsid)?;
    if s.is_empty() || s.len() > 32 {
        return Err(Invalid::SsidLength(s.into(), s.len()));
    }
    Ok(s.as_bytes().to_vec())
}

/// The secret wpa_supplicant gets: the 256-bit pre-shared key, never the passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Psk(pub [u8; 32]);

/// Pure: the PSK for a passphrase (PBKDF2-HMAC-SHA1 over the SSID, 4096 rounds, as IEEE
/// 802.11i and `wpa_passphrase` derive it), or a 64-hex-digit PSK given as is.
pub fn psk(password: Option<&str>, ssid: &[u8]) -> Result<Psk, Invalid> {
    let p = password.ok_or(Invalid::MissingPassword)?;
    if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&p[2 * i..2 * i + 2], 16).map_err(|_| Invalid::PasswordCharacters)?;
        }
        return Ok(Psk(key));
    }
    let n = p.chars().count();
    if !(8..=63).contains(&n) {
        return Err(Invalid::PasswordLength(n));
    }
    if !p.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Invalid::PasswordCharacters);
    }
    Ok(Psk(pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 32>(p.as_bytes(), ssid, 4096)))
}

/// Pure: the country codes of a regulatory.db (wireless-regdb's format: magic `RGDB`,
/// version 20, then 4-byte entries of two letters and a pointer, ended by a zero pointer).
/// "00", the world domain, is not a country.
pub fn regdb_countries(db: &[u8]) -> Result<BTreeSet<String>, String> {
    const MAGIC: &[u8] = b"RGDB";
    if db.len() < 8 || &db[..4] != MAGIC {
        return Err("not a regulatory database (no RGDB magic)".into());
    }
    let version = u32::from_be_bytes([db[4], db[5], db[6], db[7]]);
    if version != 20 {
        return Err(format!("regulatory database version {version}, expected 20"));
    }
    let mut out = BTreeSet::new();
    for entry in db[8..].chunks_exact(4) {
        if entry[2] == 0 && entry[3] == 0 {
            return Ok(out.into_iter().filter(|c: &String| c != "00").collect());
        }
        if entry[..2].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            out.insert(String::from_utf8_lossy(&entry[..2]).into_owned());
        }
    }
    Err("regulatory database ends without its end marker".into())
}

/// Pure: the country code in upper case, if the regulatory database knows it.
pub fn country(value: Option<&str>, known: &BTreeSet<String>) -> Result<String, Invalid> {
    let c = value.ok_or(Invalid::MissingCountry)?.trim().to_ascii_uppercase();
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) && known.contains(&c) {
        Ok(c)
    } else {
        Err(Invalid::UnknownCountry(c))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pure: wpa_supplicant's configuration for one WPA2/WPA3-transition network. The SSID is
/// written in hex, so any bytes are safe; the passphrase itself is not stored.
pub fn config_text(ssid: &[u8], psk: &Psk, country: &str) -> String {
    let readable: String = String::from_utf8_lossy(ssid).escape_debug().collect();
    format!(
        "# Written by setup-wifi; `sudo setup-wifi --off` removes it. Read by wpa_supplicant,\n\
         # which lightwhale-wifi runs for every Wi-Fi interface.\n\
         ctrl_interface=DIR={CONTROL_DIR} GROUP=sudo\n\
         country={country}\n\
         network={{\n\
         \t# SSID \"{readable}\"\n\
         \tssid={}\n\
         \tpsk={}\n\
         \tkey_mgmt=WPA-PSK WPA-PSK-SHA256\n\
         \tieee80211w=1\n\
         \tscan_ssid=1\n\
         }}\n",
        hex(ssid),
        hex(&psk.0)
    )
}

/// Pure: whether a network interface is one wpa_supplicant should run on: a `wl*` name
/// (DHCP covers those, see /etc/dhcpcd.conf) of a cfg80211 device.
pub fn is_wifi(name: &str, has_phy80211: bool) -> bool {
    name.starts_with("wl") && has_phy80211
}

/// The Wi-Fi interfaces present now, sorted.
pub fn interfaces(sys_class_net: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys_class_net)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_wifi(n, sys_class_net.join(n).join("phy80211").exists()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What the runner does next for the interfaces it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Interfaces without a wpa_supplicant (and not waiting out a restart delay).
    pub start: Vec<String>,
    /// wpa_supplicants whose interface has gone.
    pub stop: Vec<String>,
}

/// Pure: start wpa_supplicant on interfaces that have none and may start (`blocked` are
/// waiting out their restart delay), stop those whose interface disappeared.
pub fn plan(present: &[String], running: &BTreeSet<String>, blocked: &BTreeSet<String>) -> Plan {
    Plan {
        start: present.iter().filter(|i| !running.contains(*i) && !blocked.contains(*i)).cloned().collect(),
        stop: running.iter().filter(|i| !present.contains(i)).cloned().collect(),
    }
}

/// Pure: restart delay after `failures` quick exits of one interface's wpa_supplicant
/// (the init's backoff: 1 s, 2 s, 4 s ... 60 s).
pub fn restart_delay(failures: u32) -> std::time::Duration {
    lightwhale_types::service::backoff(failures)
}

/// What identifies a version of the configuration file: a change means "reload".
pub type Fingerprint = Option<(u64, i64, i64, u64)>;

/// The configuration's current fingerprint (size, mtime, ctime, inode).
pub fn fingerprint(path: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000, m.ctime(), m.ino()))
}

/// Pure: which interfaces' wpa_supplicants to ask to re-read the configuration.
pub fn reload(before: &Fingerprint, now: &Fingerprint, running: &BTreeMap<String, u32>) -> Vec<String> {
    if before != now && now.is_some() {
        running.keys().cloned().collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_matches_ieee_802_11i_test_vectors() {
        // IEEE 802.11i-2004, H.4.1 (also what `wpa_passphrase IEEE password` prints).
        let p = psk(Some("password"), b"IEEE").unwrap();
        assert_eq!(hex(&p.0), "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e");
        let p = psk(Some("ThisIsAPassword"), b"ThisIsASSID").unwrap();
        assert_eq!(hex(&p.0), "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af");
        // A PSK in hex is taken as it is.
        let raw = "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e";
        assert_eq!(hex(&psk(Some(raw), b"x").unwrap().0), raw);
    }

    #[test]
    fn bad_passwords_and_ssids_are_refused() {
        assert_eq!(psk(Some("short"), b"x"), Err(Invalid::PasswordLength(5)));
        assert_eq!(psk(Some(&"x".repeat(64)), b"x"), Err(Invalid::PasswordLength(64)));
        assert_eq!(psk(Some("pässwörter"), b"x"), Err(Invalid::PasswordCharacters));
        assert_eq!(psk(None, b"x"), Err(Invalid::MissingPassword));
        assert!(psk(Some("12345678"), b"x").is_ok());
        assert_eq!(ssid(None), Err(Invalid::MissingSsid));
        assert_eq!(ssid(Some("")), Err(Invalid::SsidLength(String::new(), 0)));
        assert!(ssid(Some(&"s".repeat(33))).is_err());
        assert_eq!(ssid(Some("home \"net\"")).unwrap(), b"home \"net\"");
        for e in [Invalid::MissingSsid, Invalid::PasswordLength(3), Invalid::UnknownCountry("XX".into())] {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    fn db(entries: &[(&[u8; 2], u16)]) -> Vec<u8> {
        let mut d = b"RGDB".to_vec();
        d.extend(20u32.to_be_bytes());
        for (a, ptr) in entries {
            d.extend_from_slice(&a[..]);
            d.extend(ptr.to_be_bytes());
        }
        d.extend([0, 0, 0, 0]);
        d.extend([0xab; 16]);
        d
    }

    #[test]
    fn countries_come_from_the_regulatory_database() {
        let known = regdb_countries(&db(&[(b"00", 0x49f), (b"DE", 0x501), (b"US", 0x520)])).unwrap();
        assert_eq!(known.iter().map(String::as_str).collect::<Vec<_>>(), ["DE", "US"]);
        assert_eq!(country(Some("de"), &known).unwrap(), "DE");
        assert_eq!(country(Some("XX"), &known), Err(Invalid::UnknownCountry("XX".into())));
        assert_eq!(country(Some("00"), &known), Err(Invalid::UnknownCountry("00".into())));
        assert_eq!(country(Some("Germany"), &known), Err(Invalid::UnknownCountry("GERMANY".into())));
        assert_eq!(country(None, &known), Err(Invalid::MissingCountry));
        assert!(regdb_countries(b"RGDB\0\0\0\x13").is_err());
        assert!(regdb_countries(b"garbage!").is_err());
        let mut no_end = db(&[(b"DE", 1)]);
        no_end.truncate(12);
        assert!(regdb_countries(&no_end).is_err());
    }

    #[test]
    fn the_shipped_regulatory_database_parses_when_present() {
        // On a build host with wireless-regdb (or in the image).
        if let Ok(data) = std::fs::read(REGULATORY_DB) {
            let known = regdb_countries(&data).unwrap();
            assert!(known.contains("DE") && known.contains("US") && known.len() > 100, "{known:?}");
        }
    }

    #[test]
    fn config_stores_the_key_not_the_password() {
        let key = psk(Some("correct horse"), b"caf\xc3\xa9\n\"x\"").unwrap();
        let text = config_text("café\n\"x\"".as_bytes(), &key, "DE");
        assert!(text.contains("country=DE\n"));
        assert!(text.contains(&format!("\tpsk={}\n", hex(&key.0))));
        assert!(text.contains("\tssid=636166c3a90a227822\n"), "{text}");
        assert!(!text.contains("correct horse"));
        // The readable SSID in the comment cannot break out of its line.
        assert!(text.contains("# SSID \"café\\n\\\"x\\\"\"\n"), "{text}");
        assert_eq!(text.matches('\n').count(), 12, "{text}");
    }

    #[test]
    fn wifi_interfaces_and_the_runner_plan() {
        assert!(is_wifi("wlan0", true));
        assert!(!is_wifi("wlan0", false));
        assert!(!is_wifi("eth0", true));
        let present = vec!["wlan0".to_string(), "wlan2".to_string()];
        let running: BTreeSet<String> = ["wlan0", "wlan1"].map(String::from).into();
        let blocked: BTreeSet<String> = ["wlan2"].map(String::from).into();
        assert_eq!(plan(&present, &running, &blocked), Plan { start: vec![], stop: vec!["wlan1".into()] });
        assert_eq!(
            plan(&present, &BTreeSet::new(), &BTreeSet::new()),
            Plan { start: vec!["wlan0".into(), "wlan2".into()], stop: vec![] }
        );
        assert_eq!(restart_delay(0), std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_changed_configuration_is_reloaded_everywhere() {
        let running: BTreeMap<String, u32> = [("wlan0".to_string(), 7), ("wlan1".to_string(), 8)].into();
        let a = Some((10, 1, 1, 5));
        let b = Some((12, 2, 2, 6));
        assert!(reload(&a, &a, &running).is_empty());
        assert_eq!(reload(&a, &b, &running), ["wlan0", "wlan1"]);
        assert!(reload(&a, &None, &running).is_empty(), "a removed file stops the service instead");
    }

    #[test]
    fn the_wifi_service_runs_only_while_the_configuration_exists() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/wifi/init.ron");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = lightwhale_types::config::parse_module(&text, &path).unwrap();
        let svc = cfg.services.iter().find(|s| s.name == "wifi").expect("wifi service");
        assert_eq!(svc.only_if_exists.as_deref(), Some(CONFIG));
        assert_eq!(svc.exec[0], "/usr/bin/lightwhale-wifi");
    }
}
