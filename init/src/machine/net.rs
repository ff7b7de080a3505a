//! Loopback and "is the network online" (a default route exists).

use std::os::fd::AsRawFd;

/// Pure: true when /proc/net/route or /proc/net/ipv6_route has a default route through a
/// real interface.
pub fn has_default_route(route_v4: &str, route_v6: &str) -> bool {
    const RTF_UP: u32 = 0x1;
    let v4 = route_v4.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && f[0] != "lo"
            && f[1] == "00000000"
            && u32::from_str_radix(f[3], 16).is_ok_and(|fl| fl & RTF_UP != 0)
    });
    let v6 = route_v6.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 10
            && f[0] == "00000000000000000000000000000000"
            && f[1] == "00"
            && f[9] != "lo"
            && f[4] != "00000000000000000000000000000000"
    });
    v4 || v6
}

pub fn network_online() -> bool {
    let r4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let r6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    has_default_route(&r4, &r6)
}

/// Pure: the interfaces DHCP is for (wired NICs named by the kernel), as in dhcpcd.conf.
pub fn is_wired(name: &str) -> bool {
    name.starts_with("eth") || name.starts_with("en")
}

/// Brings `lo` and every wired NIC up, so carrier detection runs while the rest of the
/// system starts instead of after dhcpcd has started.
pub fn links_up() -> Vec<String> {
    let mut up = Vec::new();
    let names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for n in names.iter().filter(|n| *n == "lo" || is_wired(n)) {
        match link_up(n) {
            Ok(()) => up.push(n.clone()),
            Err(e) => log::warn!("bringing up {n}: {e}"),
        }
    }
    up
}

/// `ip link set <name> up`, without needing iproute2.
pub fn link_up(name: &str) -> std::io::Result<()> {
    // SAFETY: plain socket creation; the fd is owned by the File below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    // SAFETY: req is a valid ifreq for the duration of both calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn wired_names() {
        assert!(is_wired("eth0"));
        assert!(is_wired("enp3s0"));
        assert!(!is_wired("wlan0"));
        assert!(!is_wired("docker0"));
        assert!(!is_wired("veth1234"));
    }

    #[test]
    fn default_route_v4() {
        let with = format!("{HEAD}eth0\t00000000\t0202000A\t0003\t0\t0\t1002\t00000000\t0\t0\t0\neth0\t0002000A\t00000000\t0001\t0\t0\t1002\t00FFFFFF\t0\t0\t0\n");
        assert!(has_default_route(&with, ""));
        let without = format!("{HEAD}eth0\t0002000A\t00000000\t0001\t0\t0\t1002\t00FFFFFF\t0\t0\t0\n");
        assert!(!has_default_route(&without, ""));
        assert!(!has_default_route(HEAD, ""));
    }

    #[test]
    fn default_route_v6_ignores_lo_and_unreachable() {
        let lo = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert!(!has_default_route("", lo));
        let eth = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000002 00000400 00000001 00000000 00450003     eth0\n";
        assert!(has_default_route("", eth));
    }
}
