//! A Docker Swarm of Lightwhale machines: each node has its own persistence disk, a NoCloud
//! seed that names it and gives it a static address on a private segment (the second NIC,
//! see `segment`), and forwarded host ports on its user-mode NIC. `cargo xtask cluster`
//! and the swarm scenario build their nodes and form their swarm with this, so what a
//! person tries is what the test proves.

use crate::machine::Machine;
use crate::qemu::{Boot, Config, Disk, Iface};
use crate::VmError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The segment's subnet: the first three octets; node i has .1i (10.77.0.11, .12, ...).
pub const SUBNET: &str = "10.77.0";
pub const PREFIX_LEN: u8 = 24;
/// Where managers listen for joins and for the cluster's control traffic.
pub const SWARM_PORT: u16 = 2377;
/// Prefix of every node's hostname (lw-node1, lw-node2, ...): a swarm needs distinct ones.
pub const HOSTNAME_PREFIX: &str = "lw-node";
/// Each node's persistence disk: room for Docker's data root and a few images.
pub const DISK_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Nodes at most: addresses .11-.19 and the segment's MACs stay distinct and readable.
pub const MAX_NODES: usize = 9;
/// Join tokens start with this (`docker swarm join-token -q` prints only the token).
const TOKEN_PREFIX: &str = "SWMTKN-1-";

/// One node of the cluster (numbered from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub index: usize,
    pub hostname: String,
    /// Its static IPv4 address on the segment (no prefix length).
    pub addr: String,
    /// The MAC of its segment NIC: the network-config finds the NIC by it.
    pub mac: String,
}

/// Pure: the nodes of an `n`-node cluster.
pub fn nodes(n: usize) -> Result<Vec<Node>, VmError> {
    if !(1..=MAX_NODES).contains(&n) {
        return Err(VmError::Setup(format!("a cluster has 1 to {MAX_NODES} nodes, not {n}")));
    }
    Ok((1..=n)
        .map(|i| Node {
            index: i,
            hostname: format!("{HOSTNAME_PREFIX}{i}"),
            addr: format!("{SUBNET}.{}", 10 + i),
            mac: crate::segment::mac(i - 1),
        })
        .collect())
}

impl Node {
    /// Pure: the seed's meta-data. The instance-id carries the hostname so each node's seed
    /// is applied on its first boot and not again.
    pub fn meta_data(&self) -> String {
        format!("instance-id: lw-cluster-{0}\nlocal-hostname: {0}\n", self.hostname)
    }

    /// Pure: the seed's user-data: only the hostname; the default account stays as it is.
    pub fn user_data(&self) -> String {
        format!("#cloud-config\nhostname: {}\n", self.hostname)
    }

    /// Pure: the seed's network-config: the segment NIC (found by its MAC) gets the static
    /// address; no route and no DNS, so the default route and Docker's DNS stay on the
    /// user-mode NIC, which keeps DHCP.
    pub fn network_config(&self) -> String {
        format!(
            "version: 2\nethernets:\n  segment:\n    match:\n      macaddress: '{}'\n    dhcp4: false\n    addresses: [{}/{PREFIX_LEN}]\n",
            self.mac, self.addr
        )
    }

    /// Writes the seed's files into `dir`/seed and the ISO seed image `dir`/seed.iso.
    pub fn write_seed(&self, dir: &Path) -> Result<PathBuf, VmError> {
        let src = dir.join("seed");
        crate::seed::write_dir(&src, &self.meta_data(), &self.user_data(), Some(&self.network_config()))?;
        let image = dir.join("seed.iso");
        crate::seed::iso(&src, &image)?;
        Ok(image)
    }
}

/// Pure: the command that makes `manager` the first manager of a new swarm.
pub fn init_command(manager: &Node) -> String {
    format!("docker swarm init --advertise-addr {}", manager.addr)
}

/// Pure: the command that joins `node` to the swarm managed by `manager`. The advertised
/// address is given so the swarm talks over the segment, not the user-mode NIC.
pub fn join_command(node: &Node, manager: &Node, token: &str) -> String {
    format!("docker swarm join --token {token} --advertise-addr {} {}:{SWARM_PORT}", node.addr, manager.addr)
}

/// Pure: how a person forms the swarm from the host over SSH (password `opsecret`), for
/// nodes whose SSH is forwarded to the host ports `ssh_ports`; `known_hosts` keeps the
/// nodes' host keys apart from the user's own.
pub fn manual_commands(nodes: &[Node], ssh_ports: &[u16], known_hosts: &Path) -> String {
    // The remote command in double quotes: ssh joins its words with spaces and the remote
    // shell splits them again, which would tear `--format '...'` apart; $TOKEN is expanded
    // on the host.
    let ssh = |port: u16, cmd: &str| {
        format!("ssh -p {port} -o UserKnownHostsFile={} op@127.0.0.1 \"{cmd}\"", known_hosts.display())
    };
    let mut s = format!("{}\n", ssh(ssh_ports[0], &init_command(&nodes[0])));
    s.push_str(&format!("TOKEN=$({})\n", ssh(ssh_ports[0], "docker swarm join-token -q worker")));
    for (node, port) in nodes.iter().zip(ssh_ports).skip(1) {
        s.push_str(&format!("{}\n", ssh(*port, &join_command(node, &nodes[0], "$TOKEN"))));
    }
    s.push_str(&format!("{}\n", ssh(ssh_ports[0], NODE_LS)));
    s
}

/// Pure: the token in `docker swarm join-token -q` output, or why there is none.
pub fn parse_token(output: &str) -> Result<String, VmError> {
    let t = output.trim();
    if t.starts_with(TOKEN_PREFIX) && !t.contains(char::is_whitespace) {
        Ok(t.to_string())
    } else {
        Err(VmError::Setup(format!("`docker swarm join-token -q` printed no join token: {output:?}")))
    }
}

/// The format `docker node ls` is asked for, which `node_states` reads.
pub const NODE_LS: &str = "docker node ls --format '{{.Hostname}} {{.Status}}'";

/// Pure: (hostname, status) per line of `NODE_LS` output.
pub fn node_states(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, s)| (h.trim().to_string(), s.trim().to_string()))
        .collect()
}

/// Pure: whether every node is listed and Ready.
pub fn all_ready(output: &str, nodes: &[Node]) -> bool {
    let states = node_states(output);
    nodes.iter().all(|n| states.iter().any(|(h, s)| *h == n.hostname && s == "Ready"))
}

/// A node's machine: its persistence disk on the IDE primary master (as the guide has it),
/// its seed, its segment NIC, and forwarded guest ports `guest_ports` (host ports are
/// chosen when the machine starts). One vCPU: under TCG on a two-core host, two vCPUs per
/// node made them fight for the cores (measured with the swarm scenario, a build running
/// beside it: both nodes ready after 150 s with one vCPU each, 183 s with two; the whole
/// scenario 632 s and 641 s).
pub fn machine_config(boot: Boot, disk: &Path, seed: &Path, port: crate::segment::Port, guest_ports: &[u16]) -> Config {
    let mut c = Config::new(boot);
    c.cpus = 1;
    c.disks = vec![Disk { path: disk.to_path_buf(), iface: Iface::Ide, snapshot: false }];
    c.seed = Some(seed.to_path_buf());
    c.segment = Some(port);
    c.forwards = guest_ports.iter().map(|g| (0, *g)).collect();
    c
}

/// Makes `dir` hold a fresh persistence disk (with the magic header) and the seed for
/// `node`; returns (disk, seed image).
pub fn prepare(dir: &Path, node: &Node) -> Result<(PathBuf, PathBuf), VmError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| VmError::Host(format!("{}: {e}", dir.display())))?;
    let disk = dir.join("persistence.img");
    crate::host::magic_disk(&disk, DISK_BYTES)?;
    Ok((disk, node.write_seed(dir)?))
}

const MIN: Duration = Duration::from_secs(60);

/// Waits on a logged-in node until Docker answers and the segment address is up.
pub fn wait_ready(m: &mut Machine, node: &Node, timeout: Duration) -> Result<(), VmError> {
    m.wait_until_succeeds("docker info >/dev/null", timeout)?;
    m.wait_until_succeeds(&format!("ip -4 -o addr | grep -qF ' {}/{PREFIX_LEN} '", node.addr), timeout)?;
    Ok(())
}

/// Forms the swarm: `swarm init` on the first machine, the others join it as workers, then
/// waits until the manager lists every node Ready. The machines are logged in and ready
/// (`wait_ready`). Returns the time from `swarm init` until all were Ready.
pub fn form_swarm(machines: &mut [Machine], nodes: &[Node], timeout: Duration) -> Result<Duration, VmError> {
    let (first, rest) = machines.split_first_mut().ok_or_else(|| VmError::Setup("no machines".into()))?;
    let manager = &nodes[0];
    let t0 = Instant::now();
    first.succeed(&init_command(manager), 2 * MIN)?;
    let token = parse_token(&first.succeed("docker swarm join-token -q worker", MIN)?)?;
    for (m, node) in rest.iter_mut().zip(&nodes[1..]) {
        // The segment may take a moment after boot: the join needs the manager's port
        // reachable (a TCP connect from bash: the image has no ping command).
        m.wait_until_succeeds(&format!("timeout 10 bash -c ': </dev/tcp/{}/{SWARM_PORT}'", manager.addr), 2 * MIN)?;
        m.succeed(&join_command(node, manager, &token), 3 * MIN)?;
    }
    crate::retry(timeout, Duration::from_secs(2), |_| {
        let out = first.succeed(NODE_LS, MIN)?;
        match all_ready(&out, nodes) {
            true => Ok(()),
            false => Err(VmError::Setup(format!("not every node is Ready in `docker node ls`:\n{out}"))),
        }
    })?;
    Ok(t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_have_distinct_names_addresses_and_macs() {
        let n = nodes(3).unwrap();
        assert_eq!(n[0].hostname, "lw-node1");
        assert_eq!(n[2].addr, "10.77.0.13");
        assert_ne!(n[0].mac, n[1].mac);
        assert_eq!(n[1].mac, crate::segment::mac(1), "node 2 is on segment port 1");
        assert!(nodes(0).is_err());
        assert!(nodes(MAX_NODES + 1).unwrap_err().to_string().contains("1 to 9"));
    }

    /// The init's own seed reader takes each node's seed whole: the hostname, nothing
    /// refused or unknown, and one static address for the segment NIC only.
    #[test]
    fn the_init_reads_each_seed_as_meant() {
        use lightwhale_nocloud::{network, parse};
        for n in nodes(3).unwrap() {
            let mut salt = || "salt".to_string();
            let (meta, user, net) = (n.meta_data(), n.user_data(), n.network_config());
            let p = parse::parse_seed(Some(meta.as_bytes()), Some(user.as_bytes()), Some(net.as_bytes()), &mut salt);
            assert!(p.errors.is_empty() && p.refused.is_empty() && p.unknown_keys.is_empty(), "{p:?}");
            assert_eq!(p.instance_id, format!("lw-cluster-lw-node{}", n.index));
            assert_eq!(p.user.hostname.as_deref(), Some(n.hostname.as_str()));
            let nics = vec![
                network::Nic { name: "eth0".into(), mac: "52:54:00:12:34:56".into() },
                network::Nic { name: "eth1".into(), mac: n.mac.clone() },
            ];
            let (block, refused) = network::render(&p.network, &nics);
            assert!(refused.is_empty(), "{refused:?}");
            // No route or DNS: the default route stays on eth0's DHCP.
            assert_eq!(block, format!("interface eth1\n  static ip_address={}/24\n", n.addr));
        }
    }

    #[test]
    fn commands_and_tokens() {
        let n = nodes(2).unwrap();
        assert_eq!(init_command(&n[0]), "docker swarm init --advertise-addr 10.77.0.11");
        assert_eq!(
            join_command(&n[1], &n[0], "SWMTKN-1-abc"),
            "docker swarm join --token SWMTKN-1-abc --advertise-addr 10.77.0.12 10.77.0.11:2377"
        );
        assert_eq!(parse_token("SWMTKN-1-abc-def\n").unwrap(), "SWMTKN-1-abc-def");
        let e = parse_token("Error response from daemon: This node is not a swarm manager.").unwrap_err();
        assert!(e.to_string().contains("printed no join token"), "{e}");
    }

    #[test]
    fn manual_commands_init_then_join_with_the_token() {
        let n = nodes(3).unwrap();
        let text = manual_commands(&n, &[2201, 2202, 2203], Path::new("/c/known_hosts"));
        let lines: Vec<&str> = text.lines().collect();
        let ssh1 = "ssh -p 2201 -o UserKnownHostsFile=/c/known_hosts op@127.0.0.1";
        assert_eq!(lines[0], format!("{ssh1} \"docker swarm init --advertise-addr 10.77.0.11\""));
        assert_eq!(lines[1], format!("TOKEN=$({ssh1} \"docker swarm join-token -q worker\")"));
        assert!(lines[2].starts_with("ssh -p 2202 "), "{text}");
        assert!(lines[2].ends_with("\"docker swarm join --token $TOKEN --advertise-addr 10.77.0.12 10.77.0.11:2377\""));
        assert!(lines[3].starts_with("ssh -p 2203 ") && lines[3].contains("10.77.0.13"), "{text}");
        assert_eq!(lines[4], format!("{ssh1} \"{NODE_LS}\""));
    }

    #[test]
    fn readiness_needs_every_node_ready() {
        let n = nodes(2).unwrap();
        assert!(all_ready("lw-node1 Ready\nlw-node2 Ready\n", &n));
        assert!(!all_ready("lw-node1 Ready\nlw-node2 Down\n", &n));
        assert!(!all_ready("lw-node1 Ready\n", &n));
        assert_eq!(node_states("lw-node2 Down\n"), vec![("lw-node2".to_string(), "Down".to_string())]);
    }
}
