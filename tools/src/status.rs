//! `lightwhale status`: the state of the system in one command. The init's facts
//! (/run/lightwhale/*.json) say how the boot went; the rest is read live (mounts, addresses,
//! time sync). Nothing here needs root. `--json` prints the `Status` struct: its field
//! names are the documented, stable shape (docs/operations.md, "lightwhale status").

use lightwhale_types::facts::{self, Persistence};
use lightwhale_types::space;
use serde::Serialize;
use std::process::Command;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub version: String,
    pub build_id: String,
    /// Seconds since 1970.
    pub build_date: u64,
    pub hostname: String,
    pub uptime_s: f64,
    pub boot: facts::Boot,
    pub persistence: Option<PersistenceStatus>,
    pub overlays: Vec<Overlay>,
    /// The swap areas in use (/proc/swaps): the swap file on the persistence disk, if any.
    pub swap: Vec<SwapArea>,
    pub services: Vec<ServiceStatus>,
    pub network: Network,
    pub time: TimeSync,
    pub secure_boot: SecureBoot,
    pub warnings: Vec<String>,
}

/// UEFI Secure Boot as the firmware reports it, and the kernel's lockdown mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SecureBoot {
    /// None: not booted by UEFI (BIOS), or the variable is not readable.
    pub enabled: Option<bool>,
    /// The selected mode of /sys/kernel/security/lockdown (`none`, `integrity`,
    /// `confidentiality`); None when the file is not there.
    pub lockdown: Option<String>,
}

/// The firmware's SecureBoot variable (EFI global variable GUID).
const SECURE_BOOT_VAR: &str = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Pure: the SecureBoot variable as efivarfs shows it (4 bytes of attributes, then the
/// value: 1 on, 0 off).
pub fn parse_secure_boot_var(bytes: &[u8]) -> Option<bool> {
    bytes.get(4).map(|v| *v == 1)
}

/// Pure: the selected lockdown mode, the word in brackets ("none [integrity] confidentiality").
pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersistenceStatus {
    #[serde(flatten)]
    pub fact: Persistence,
    /// Of the filesystem at /mnt/lightwhale-data (the disk's, or RAM's).
    pub size_bytes: u64,
    /// Free for users (root may write a little more: ext4's reserved blocks).
    pub free_bytes: u64,
    /// The space the init keeps back for a full disk; None without a persistence disk.
    pub reserve: Option<space::Reserve>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwapArea {
    pub path: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

/// Pure: /proc/swaps (a header line, then path, type, size and used in KiB, priority).
pub fn parse_swaps(text: &str) -> Vec<SwapArea> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let kib = |i: usize| f.get(i)?.parse::<u64>().ok().map(|k| k * 1024);
            Some(SwapArea { path: f.first()?.to_string(), size_bytes: kib(2)?, used_bytes: kib(3)? })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlay {
    pub path: String,
    /// Where changes go: on the persistence disk, or in RAM.
    pub upper: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    /// disabled, waiting, starting, running, restarting or stopped.
    pub state: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    /// Seconds since it last started, while it runs.
    pub uptime_s: Option<f64>,
    /// How its last process ended, if one has.
    pub last_exit: Option<String>,
}

/// Pure: the services as status shows them, from the init's facts and the boot's uptime.
pub fn services(facts: &[facts::ServiceFact], uptime_s: f64) -> Vec<ServiceStatus> {
    facts
        .iter()
        .map(|f| ServiceStatus {
            name: f.name.clone(),
            state: f.state.clone(),
            pid: f.pid,
            restarts: f.restarts,
            uptime_s: (f.state == facts::SERVICE_RUNNING)
                .then(|| f.started_at_s.map(|t| (uptime_s - t).max(0.0)))
                .flatten(),
            last_exit: f.last_exit.clone(),
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    pub interfaces: Vec<Interface>,
    pub default_route: Option<String>,
    pub dns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub state: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimeSync {
    /// None when the time sync daemon did not answer.
    pub synchronised: Option<bool>,
    pub source: Option<String>,
    pub stratum: Option<u32>,
    /// How far the system clock is from the source's time, in seconds.
    pub offset_s: Option<f64>,
}

/// Pure: the warnings an operator must see, from the rest of the status. `default_password`:
/// the init found op's password still the image's (it checks /etc/shadow, which only root
/// can read, and leaves a notice).
pub fn warnings(s: &Status, default_password: bool) -> Vec<String> {
    let mut w = Vec::new();
    if default_password {
        w.push(format!(
            "{}: anyone can log in; change it with `{}`",
            lightwhale_types::password::WARNING,
            lightwhale_types::password::CHANGE_COMMAND
        ));
    }
    match s.persistence.as_ref().map(|p| &p.fact) {
        Some(Persistence::Tmpfs { reason }) => {
            w.push(format!("persistence is in RAM only ({reason}): changes are lost at power-off"))
        }
        Some(Persistence::Failed { device, error }) => w.push(format!(
            "the persistence disk {device} could not be used ({error}): running from RAM, changes are lost at power-off"
        )),
        Some(Persistence::Device { .. }) => w.extend(s.persistence.as_ref().and_then(space_warning)),
        None => w.push("the init wrote no persistence facts (is this Lightwhale?)".into()),
    }
    for svc in s.services.iter().filter(|x| x.state == "restarting") {
        w.push(format!(
            "service {} is restarting after it ended ({}); see `sudo lightwhale logs {}`",
            svc.name,
            svc.last_exit.as_deref().unwrap_or("?"),
            svc.name
        ));
    }
    match s.time.synchronised {
        Some(true) => {}
        Some(false) => w.push("the clock is not synchronised: no NTP server answers yet".into()),
        None => w.push("time sync (chronyd) is not answering".into()),
    }
    w
}

/// Pure: what the persistence disk's space asks of the operator, if anything.
fn space_warning(p: &PersistenceStatus) -> Option<String> {
    let figures = format!("{} of {} free", mib(p.free_bytes), mib(p.size_bytes));
    let free_some = "free space with `docker system prune`, `docker volume rm` or by removing files";
    match &p.reserve {
        Some(r) if !r.held => Some(format!(
            "the persistence disk is full ({figures}){}: {free_some}; the reserve is made again once {} are free",
            if r.released_at_boot {
                format!(": the init released its {} reserve at boot so Docker and sshd could start", mib(r.bytes))
            } else {
                String::new()
            },
            mib(2 * r.bytes)
        )),
        _ if space::nearly_full(p.size_bytes, p.free_bytes) => {
            Some(format!("the persistence disk is nearly full ({figures}): {free_some}"))
        }
        _ => None,
    }
}

/// Pure: chrony's `chronyc -c tracking` (CSV): reference name, stratum, current offset,
/// leap status (`Not synchronised` until a source is selected).
pub fn parse_tracking(csv: &str) -> TimeSync {
    let f: Vec<&str> = csv.trim().split(',').collect();
    if f.len() < 14 {
        return TimeSync::default();
    }
    let synchronised = f[13] != "Not synchronised";
    TimeSync {
        synchronised: Some(synchronised),
        source: (synchronised && !f[1].is_empty()).then(|| f[1].to_string()),
        stratum: f[2].parse().ok(),
        offset_s: f[4].parse().ok(),
    }
}

/// Pure: interfaces and addresses from `ip -j address show`.
pub fn parse_addresses(json: &str) -> Vec<Interface> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["ifname"] != "lo")
        .map(|i| Interface {
            name: i["ifname"].as_str().unwrap_or("?").to_string(),
            state: i["operstate"].as_str().unwrap_or("?").to_lowercase(),
            addresses: i["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)))
                .collect(),
        })
        .filter(|i| !i.name.starts_with("veth"))
        .collect()
}

/// Pure: `via GATEWAY dev IFACE` of the first default route in `ip -j route show default`.
pub fn parse_default_route(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let r = v.as_array()?.first()?;
    Some(format!("via {} dev {}", r["gateway"].as_str()?, r["dev"].as_str()?))
}

/// Pure: the nameservers of a resolv.conf.
pub fn parse_resolv_conf(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn statvfs(path: &str) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: c is a valid NUL-terminated path and st a writable statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frag = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frag, st.f_bavail as u64 * frag))
}

/// Pure: whether chronyd may answer: it runs, or the init's facts do not name it.
pub fn asks_chronyd(services: &[ServiceStatus]) -> bool {
    services.iter().find(|s| s.name == "chronyd").is_none_or(|s| s.state == facts::SERVICE_RUNNING)
}

/// Everything, read now.
pub fn gather() -> Status {
    let release = lightwhale_types::release::current();
    let mount_point = lightwhale_types::constants::DATA_MOUNT_POINT;
    let persistence = facts::read::<Persistence>(facts::PERSISTENCE).map(|fact| {
        let (size_bytes, free_bytes) = statvfs(mount_point).unwrap_or((0, 0));
        let reserve = matches!(fact, Persistence::Device { .. }).then(|| facts::read(space::SPACE_FACTS)).flatten();
        PersistenceStatus { fact, size_bytes, free_bytes, reserve }
    });
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let overlays = lightwhale_types::mountinfo::mounts(&mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "overlay")
        .map(|m| Overlay {
            path: m.point.display().to_string(),
            upper: m.super_options.split(',').find_map(|o| o.strip_prefix("upperdir=")).unwrap_or("?").to_string(),
        })
        .collect();
    let network = Network {
        interfaces: parse_addresses(&run("ip", &["-j", "address", "show"]).unwrap_or_default()),
        default_route: parse_default_route(&run("ip", &["-j", "route", "show", "default"]).unwrap_or_default()),
        dns: parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
    };
    let uptime_s = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let services = services(&facts::read::<Vec<facts::ServiceFact>>(facts::SERVICES).unwrap_or_default(), uptime_s);
    // Only a running chronyd can answer: asking before it runs (a login during the boot,
    // whose motd reads this) costs a chronyc start while Docker is starting.
    let time = match asks_chronyd(&services) {
        true => run("chronyc", &["-c", "tracking"]).map(|t| parse_tracking(&t)).unwrap_or_default(),
        false => TimeSync::default(),
    };
    let secure_boot = SecureBoot {
        enabled: std::fs::read(SECURE_BOOT_VAR).ok().and_then(|b| parse_secure_boot_var(&b)),
        lockdown: std::fs::read_to_string("/sys/kernel/security/lockdown").ok().and_then(|t| parse_lockdown(&t)),
    };
    let mut s = Status {
        version: release.version,
        build_id: release.build_id,
        build_date: release.build_date,
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string(),
        uptime_s,
        boot: facts::read(facts::BOOT).unwrap_or_default(),
        persistence,
        overlays,
        swap: parse_swaps(&std::fs::read_to_string("/proc/swaps").unwrap_or_default()),
        services,
        network,
        time,
        secure_boot,
        warnings: Vec::new(),
    };
    s.warnings = warnings(&s, lightwhale_types::password::default_notice_shown());
    s
}

/// Pure: the few lines shown at every interactive login (/etc/profile.d/lightwhale.sh).
/// They never contain "$ " or "# ", which a login prompt is recognised by.
pub fn render_motd(s: &Status) -> String {
    let persistence = match s.persistence.as_ref().map(|p| (&p.fact, p.free_bytes)) {
        Some((Persistence::Device { device, .. }, free)) => format!("/dev/{device}, {} free", mib(free)),
        Some((Persistence::Tmpfs { .. }, _)) | Some((Persistence::Failed { .. }, _)) => {
            "RAM only (changes are lost at power-off)".into()
        }
        None => "unknown".into(),
    };
    let addresses: Vec<String> = s
        .network
        .interfaces
        .iter()
        .filter(|i| !i.addresses.is_empty() && !i.name.starts_with("docker") && !i.name.starts_with("br-"))
        .map(|i| {
            format!(
                "{} {}",
                i.name,
                i.addresses.iter().filter(|a| !a.starts_with("fe80:")).cloned().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    let mut o = format!("Lightwhale {} on {}, persistence: {persistence}\n", s.version, s.hostname);
    o.push_str(&format!(
        "Addresses: {}\n",
        if addresses.is_empty() { "none yet".into() } else { addresses.join(", ") }
    ));
    // The default password has its own, louder notice right above (the init's, in
    // /run/motd.d): not twice.
    for w in s.warnings.iter().filter(|w| !w.starts_with(lightwhale_types::password::WARNING)) {
        o.push_str(&format!("  ! {w}\n"));
    }
    o.push_str("More: lightwhale status\n");
    o.replace("$ ", "$").replace("# ", "#")
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// Pure: the human-readable report.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<13}{v}\n"));
    line(
        "Lightwhale",
        format!(
            "{} (build {}, {})",
            s.version,
            s.build_id,
            lightwhale_types::clock::utc(s.build_date).split(' ').next().unwrap_or("")
        ),
    );
    line("Host name", s.hostname.clone());
    line("Up", format!("{:.0} min", s.uptime_s / 60.0));
    line(
        "Persistence",
        match &s.persistence {
            Some(p) => match &p.fact {
                Persistence::Device { device, claimed, uuid } => format!(
                    "/dev/{device} (ext4 {uuid}{}), {} of {} free",
                    if *claimed { ", claimed on this boot" } else { "" },
                    mib(p.free_bytes),
                    mib(p.size_bytes)
                ),
                Persistence::Tmpfs { reason } => format!("RAM only ({reason}), {} free", mib(p.free_bytes)),
                Persistence::Failed { device, error } => format!("RAM only: {device} failed: {error}"),
            },
            None => "unknown".into(),
        },
    );
    line("Overlays", s.overlays.iter().map(|ov| ov.path.clone()).collect::<Vec<_>>().join(" "));
    line(
        "Swap",
        match s.swap.as_slice() {
            [] => "none".into(),
            areas => areas
                .iter()
                .map(|a| format!("{} in {}, {} used", mib(a.size_bytes), a.path, mib(a.used_bytes)))
                .collect::<Vec<_>>()
                .join("; "),
        },
    );
    for i in &s.network.interfaces {
        line("Network", format!("{} {} {}", i.name, i.state, i.addresses.join(" ")));
    }
    line("Route", s.network.default_route.clone().unwrap_or_else(|| "no default route".into()));
    line("DNS", if s.network.dns.is_empty() { "none".into() } else { s.network.dns.join(" ") });
    line(
        "Time",
        match (s.time.synchronised, &s.time.source) {
            (Some(true), src) => format!(
                "synchronised to {} (stratum {}), offset {:+.6} s",
                src.as_deref().unwrap_or("?"),
                s.time.stratum.unwrap_or(0),
                s.time.offset_s.unwrap_or(0.0)
            ),
            (Some(false), _) => "not synchronised".into(),
            (None, _) => "unknown (chronyd not answering)".into(),
        },
    );
    line(
        "Secure Boot",
        format!(
            "{}, lockdown {}",
            match s.secure_boot.enabled {
                Some(true) => "on",
                Some(false) => "off",
                None => "state not readable (BIOS boot, or no efivarfs)",
            },
            s.secure_boot.lockdown.as_deref().unwrap_or("unknown")
        ),
    );
    o.push_str("Services:\n");
    for svc in &s.services {
        let up = svc.uptime_s.map(|u| format!("up {:.0} min", u / 60.0)).unwrap_or_default();
        let pid = svc.pid.map(|p| format!("pid {p}")).unwrap_or_default();
        o.push_str(&format!("  {:<14} {:<11} {:<10} {:<10} {} restarts\n", svc.name, svc.state, pid, up, svc.restarts));
    }
    o.push_str("Boot:\n");
    for st in &s.boot.steps {
        o.push_str(&format!("  {:>8.2} s  {:<20} {} ({:.2} s)\n", st.uptime_s, st.name, st.detail, st.took_s));
    }
    if let Some(f) = s.boot.finished_s {
        o.push_str(&format!("  {f:>8.2} s  services started\n"));
    }
    if !s.warnings.is_empty() {
        o.push_str("Warnings:\n");
        for w in &s.warnings {
            o.push_str(&format!("  ! {w}\n"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_csv() {
        let synced = "C0A80001,192.168.0.1,2,1795834528.123,0.000012345,-0.000001,0.0001,-3.2,0.001,0.02,0.012,0.0005,64.5,Normal\n";
        let t = parse_tracking(synced);
        assert_eq!(t.synchronised, Some(true));
        assert_eq!(t.source.as_deref(), Some("192.168.0.1"));
        assert_eq!(t.stratum, Some(2));
        assert_eq!(t.offset_s, Some(0.000012345));
        let unsynced = "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,1.000000000,1.000000000,0.0,Not synchronised\n";
        let t = parse_tracking(unsynced);
        assert_eq!(t.synchronised, Some(false));
        assert_eq!(t.source, None);
        assert_eq!(parse_tracking("garbage"), TimeSync::default());
    }

    #[test]
    fn chronyd_is_asked_only_while_it_runs() {
        let svc = |state: &str| ServiceStatus {
            name: "chronyd".into(),
            state: state.into(),
            pid: None,
            restarts: 0,
            uptime_s: None,
            last_exit: None,
        };
        assert!(asks_chronyd(&[svc("running")]));
        assert!(!asks_chronyd(&[svc("waiting")]));
        assert!(!asks_chronyd(&[svc("restarting")]));
        assert!(asks_chronyd(&[]), "without the init's facts, chronyc says whether chronyd answers");
    }

    #[test]
    fn addresses_routes_and_dns() {
        let addr = r#"[{"ifname":"lo","operstate":"UNKNOWN","addr_info":[{"local":"127.0.0.1","prefixlen":8}]},
            {"ifname":"eth0","operstate":"UP","addr_info":[{"family":"inet","local":"10.0.2.15","prefixlen":24},{"family":"inet6","local":"fec0::1","prefixlen":64}]},
            {"ifname":"vethab12","operstate":"UP","addr_info":[]}]"#;
        let i = parse_addresses(addr);
        assert_eq!(i.len(), 1);
        assert_eq!(
            i[0],
            Interface {
                name: "eth0".into(),
                state: "up".into(),
                addresses: vec!["10.0.2.15/24".into(), "fec0::1/64".into()]
            }
        );
        assert_eq!(
            parse_default_route(r#"[{"dst":"default","gateway":"10.0.2.2","dev":"eth0","protocol":"dhcp"}]"#)
                .as_deref(),
            Some("via 10.0.2.2 dev eth0")
        );
        assert_eq!(parse_default_route("[]"), None);
        assert_eq!(
            parse_resolv_conf("# dhcpcd\nnameserver 10.0.2.3\nsearch example\nnameserver ::1\n"),
            vec!["10.0.2.3", "::1"]
        );
    }

    #[test]
    fn secure_boot_and_lockdown() {
        assert_eq!(parse_secure_boot_var(&[6, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_secure_boot_var(&[6, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_secure_boot_var(&[6, 0]), None);
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("[none] integrity confidentiality").as_deref(), Some("none"));
        assert_eq!(parse_lockdown(""), None);
    }

    #[test]
    fn warnings_and_rendering() {
        let mut s = Status {
            version: "0.1.0".into(),
            build_id: "abc".into(),
            build_date: 1_795_834_528,
            hostname: "lightwhale-1a2b3c".into(),
            persistence: Some(PersistenceStatus {
                fact: Persistence::Tmpfs { reason: "no persistence device".into() },
                size_bytes: 1 << 30,
                free_bytes: 1 << 29,
                reserve: None,
            }),
            time: TimeSync { synchronised: Some(false), ..Default::default() },
            ..Default::default()
        };
        s.services = services(
            &[
                facts::ServiceFact {
                    name: "dockerd".into(),
                    state: "running".into(),
                    pid: Some(42),
                    restarts: 1,
                    started_at_s: Some(100.0),
                    last_exit: Some("killed by SIGKILL".into()),
                },
                facts::ServiceFact {
                    name: "sshd".into(),
                    state: "restarting".into(),
                    pid: None,
                    restarts: 3,
                    started_at_s: Some(10.0),
                    last_exit: Some("exit code 255".into()),
                },
            ],
            400.0,
        );
        assert_eq!(s.services[0].uptime_s, Some(300.0));
        assert_eq!(s.services[1].uptime_s, None);
        s.warnings = warnings(&s, false);
        assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
        assert!(warnings(&s, true)[0].contains("sudo passwd op"));
        assert!(s.warnings[1].contains("sshd is restarting") && s.warnings[1].contains("exit code 255"));
        assert!(s.warnings[0].contains("RAM only") && s.warnings[2].contains("not synchronised"));
        let text = render(&s);
        assert!(text.contains("Lightwhale   0.1.0 (build abc, 2026-11-28)"), "{text}");
        assert!(text.contains("Persistence  RAM only (no persistence device), 512 MiB free"), "{text}");
        assert!(text.contains("  ! the clock is not synchronised"), "{text}");
        assert!(text.contains("  dockerd        running     pid 42     up 5 min   1 restarts"), "{text}");
        s.network.interfaces = vec![Interface {
            name: "eth0".into(),
            state: "up".into(),
            addresses: vec!["10.0.2.15/24".into(), "fe80::1/64".into()],
        }];
        let motd = render_motd(&s);
        assert!(motd.starts_with("Lightwhale 0.1.0 on lightwhale-1a2b3c, persistence: RAM only"), "{motd}");
        assert!(
            motd.contains("Addresses: eth0 10.0.2.15/24\n") && motd.contains("  ! the clock is not synchronised"),
            "{motd}"
        );
        assert!(!motd.contains("$ ") && !motd.contains("# "));
        s.warnings = warnings(&s, true);
        assert!(!render_motd(&s).contains("password"), "the motd repeats the password notice");
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(json["persistence"]["mode"], "tmpfs");
        assert_eq!(json["time"]["synchronised"], false);
    }

    #[test]
    fn swap_areas_from_proc_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /mnt/lightwhale-data/swapfile           file\t\t89084\t\t1024\t\t-2\n";
        let areas = parse_swaps(text);
        assert_eq!(
            areas,
            vec![SwapArea {
                path: "/mnt/lightwhale-data/swapfile".into(),
                size_bytes: 89084 * 1024,
                used_bytes: 1 << 20
            }]
        );
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
        let s = Status { swap: areas, ..Default::default() };
        assert!(
            render(&s).contains("Swap         86 MiB in /mnt/lightwhale-data/swapfile, 1 MiB used"),
            "{}",
            render(&s)
        );
    }

    #[test]
    fn a_full_or_nearly_full_disk_is_a_warning_with_the_figures() {
        let mib = 1u64 << 20;
        let disk = |free_bytes, reserve| PersistenceStatus {
            fact: Persistence::Device { device: "sda1".into(), claimed: false, uuid: "u".into() },
            size_bytes: 1000 * mib,
            free_bytes,
            reserve,
        };
        let held = space::Reserve { bytes: 32 * mib, held: true, released_at_boot: false };
        assert_eq!(space_warning(&disk(500 * mib, Some(held))), None);
        let nearly = space_warning(&disk(20 * mib, Some(held))).unwrap();
        assert!(nearly.contains("nearly full (20 MiB of 1000 MiB free)"), "{nearly}");
        let released = space::Reserve { held: false, released_at_boot: true, ..held };
        let full = space_warning(&disk(30 * mib, Some(released))).unwrap();
        assert!(full.contains("is full (30 MiB of 1000 MiB free)"), "{full}");
        assert!(
            full.contains("released its 32 MiB reserve at boot") && full.contains("once 64 MiB are free"),
            "{full}"
        );
        let s = Status { persistence: Some(disk(30 * mib, Some(released))), ..Default::default() };
        assert!(warnings(&s, false).iter().any(|w| w.contains("is full")));
        assert!(
            render_motd(&Status { warnings: warnings(&s, false), ..s }).contains("  ! the persistence disk is full")
        );
    }
}
