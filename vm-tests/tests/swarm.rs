//! Beyond one machine: two Lightwhale nodes with persistence on a private segment form a
//! Docker Swarm (the nodes and the forming are `cluster`'s, as `cargo xtask cluster` uses
//! them). Overlay networks, plain and encrypted, carry container traffic between the nodes;
//! a published service answers from both replicas and, through the routing mesh, from the
//! node that runs none. A rebooted node comes back as a member without a new join; a
//! power-cut one is marked Down and its replicas move to the other node.

use lightwhale_vm_tests::cluster::{self, Node, NODE_LS};
use lightwhale_vm_tests::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MIN: Duration = Duration::from_secs(60);
/// The image both nodes import (there is no registry to pull from).
const IMAGE: &str = "lw/busybox";
/// Guest ports forwarded from the host: SSH, the two-replica service, the one-replica one.
const SSH: u16 = 22;
const WEB: u16 = 8080;
const SOLO: u16 = 8081;

/// A service whose replicas answer HTTP with the hostname of the node they run on (the
/// task's hostname is set from the node's by a template), so the host can tell them apart.
fn create_service(name: &str, port: u16, extra: &str) -> String {
    format!(
        "docker service create --detach --name {name} --no-resolve-image --hostname '{{{{.Node.Hostname}}}}' \
         --publish published={port},target=80 {extra} {IMAGE} \
         sh -c '/busybox mkdir -p /www && /busybox hostname >/www/index.html && exec /busybox httpd -f -p 80 -h /www'"
    )
}

/// The nodes the running tasks of `service` are on, once `want` tasks are running.
fn running_on(m: &mut Machine, service: &str, want: usize, timeout: Duration) -> Result<Vec<String>, VmError> {
    let cmd = format!(
        "docker service ps {service} --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}'"
    );
    retry(timeout, Duration::from_secs(2), |_| {
        let out = m.succeed(&cmd, MIN)?;
        let nodes: Vec<String> = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        match nodes.len() == want && out.lines().count() == want {
            true => Ok(nodes),
            false => Err(VmError::Setup(format!("{service}: want {want} running tasks, have:\n{out}"))),
        }
    })
}

/// The answers seen through a host port until `want` distinct ones came (IPVS spreads new
/// connections over the replicas), or the timeout.
fn answers(port: u16, want: usize, timeout: Duration) -> Result<BTreeSet<String>, VmError> {
    let mut seen = BTreeSet::new();
    retry(timeout, Duration::from_millis(500), |_| {
        if let Ok(body) = host::http_get(port, "/") {
            seen.insert(body.trim().to_string());
        }
        match seen.len() >= want {
            true => Ok(()),
            false => Err(VmError::Host(format!("127.0.0.1:{port}: want {want} different answers, saw {seen:?}"))),
        }
    })?;
    Ok(seen)
}

fn names(nodes: &[&Node]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.hostname.clone()).collect()
}

/// Logs in once the node is up, then waits for Docker and its segment address.
fn ready(m: &mut Machine, node: &Node) -> Result<(), VmError> {
    m.login("op", "opsecret", 10 * MIN)?;
    cluster::wait_ready(m, node, 5 * MIN)
}

#[test]
#[ignore = "boots the ISO under QEMU: run with `cargo xtask test`"]
fn swarm_of_two_nodes() -> Result<(), VmError> {
    let t_all = Instant::now();
    let a = artifacts()?;
    let nodes = cluster::nodes(2)?;
    let (na, nb) = (&nodes[0], &nodes[1]);
    let dir = work_dir().join("swarm");
    let segment = segment::Segment::new(&dir.join("seg"), nodes.len())?;
    let mut machines = Vec::new();
    for (node, port) in nodes.iter().zip(&segment.ports) {
        let (disk, seed) = cluster::prepare(&dir.join(&node.hostname), node)?;
        let config = cluster::machine_config(Boot::Cdrom(a.iso.clone()), &disk, &seed, port.clone(), &[SSH, WEB, SOLO]);
        machines.push(Machine::start(&format!("swarm-{}", node.hostname), config)?);
    }
    // Both boot at once; each is logged in and made ready in turn.
    for (m, node) in machines.iter_mut().zip(&nodes) {
        ready(m, node)?;
        assert_eq!(m.succeed("hostname", MIN)?.trim(), node.hostname, "the seed names the node");
        m.import_busybox_image(IMAGE)?;
    }
    eprintln!("TIMING both nodes booted and ready: {:.0} s", t_all.elapsed().as_secs_f64());

    // The swarm forms: A initialises it, B joins, A lists both Ready.
    let formed = cluster::form_swarm(&mut machines, &nodes, 5 * MIN)?;
    eprintln!("TIMING swarm formed (init, join, both Ready): {:.1} s", formed.as_secs_f64());
    let [ma, mb] = &mut machines[..] else { unreachable!("two machines") };
    let listed = ma.succeed(NODE_LS, MIN)?;
    assert!(cluster::all_ready(&listed, &nodes), "{listed}");
    assert_eq!(mb.succeed("docker info --format '{{.Swarm.LocalNodeState}}'", MIN)?.trim(), "active");
    let b_id = mb.succeed("docker info --format '{{.Swarm.NodeID}}'", MIN)?.trim().to_string();

    // Overlays: a container on A answers a ping by name from a container on B, across a
    // plain and across an encrypted (IPsec ESP) overlay.
    for (net, opts) in [("plain", ""), ("secret", "--opt encrypted")] {
        ma.succeed(&format!("docker network create -d overlay --attachable {opts} {net}"), 2 * MIN)?;
        ma.succeed(&format!("docker run -d --name pinged-{net} --network {net} {IMAGE} sleep 3600"), 2 * MIN)?;
        let out = mb.wait_until_succeeds(
            &format!("docker run --rm --network {net} {IMAGE} ping -c 3 -W 5 pinged-{net}"),
            3 * MIN,
        )?;
        assert!(out.contains("3 packets received") || out.contains(", 0% packet loss"), "{net}: {out}");
    }
    // The encrypted overlay really is: the kernel holds IPsec state for it on A.
    assert!(!ma.sudo("ip xfrm state", MIN)?.trim().is_empty(), "no IPsec state for the encrypted overlay");

    // A published service with a replica on each node: both answer, through either node.
    ma.succeed(&create_service("web", WEB, "--replicas 2"), 2 * MIN)?;
    let on: BTreeSet<String> = running_on(ma, "web", 2, 5 * MIN)?.into_iter().collect();
    assert_eq!(on, names(&[na, nb]), "one replica per node");
    for m in [&*ma, &*mb] {
        assert_eq!(answers(m.host_port(WEB), 2, 3 * MIN)?, names(&[na, nb]), "through {}", m.name);
    }
    // Routing mesh: a service whose only replica is on A answers through B.
    ma.succeed(
        &create_service("solo", SOLO, &format!("--replicas 1 --constraint node.hostname=={}", na.hostname)),
        2 * MIN,
    )?;
    assert_eq!(running_on(ma, "solo", 1, 5 * MIN)?, vec![na.hostname.clone()]);
    assert_eq!(host::http_get_retry(mb.host_port(SOLO), "/", 3 * MIN)?.trim(), na.hostname);

    // Reboot B: it comes back as the same member (no new join) and the service is whole.
    mb.reboot()?;
    ready(mb, nb)?;
    assert_eq!(mb.succeed("docker info --format '{{.Swarm.LocalNodeState}}'", MIN)?.trim(), "active");
    assert_eq!(mb.succeed("docker info --format '{{.Swarm.NodeID}}'", MIN)?.trim(), b_id, "B joined anew");
    retry(5 * MIN, Duration::from_secs(2), |_| {
        let out = ma.succeed(NODE_LS, MIN)?;
        match cluster::all_ready(&out, &nodes) && cluster::node_states(&out).len() == 2 {
            true => Ok(()),
            false => Err(VmError::Setup(format!("B is not back as the same Ready node:\n{out}"))),
        }
    })?;
    running_on(ma, "web", 2, 5 * MIN)?;
    assert_eq!(host::http_get_retry(mb.host_port(SOLO), "/", 3 * MIN)?.trim(), na.hostname);
    let seen = answers(mb.host_port(WEB), 1, 3 * MIN)?;
    assert!(seen.is_subset(&names(&[na, nb])), "{seen:?}");
    // While B was away its replica went to A, and swarm does not move it back by itself:
    // a forced update spreads the replicas again, so the power cut below has one to move.
    ma.succeed("docker service update --force --detach web", 2 * MIN)?;
    retry(5 * MIN, Duration::from_secs(2), |_| {
        let on: BTreeSet<String> = running_on(ma, "web", 2, MIN)?.into_iter().collect();
        match on == names(&[na, nb]) {
            true => Ok(()),
            false => Err(VmError::Setup(format!("web is not spread over both nodes yet: {on:?}"))),
        }
    })?;

    // Power cut on B: A marks it Down and runs both replicas itself.
    mb.crash();
    let cut = Instant::now();
    ma.wait_until_succeeds(&format!("{NODE_LS} | grep -qx '{} Down'", nb.hostname), 5 * MIN)?;
    let down = cut.elapsed();
    assert_eq!(running_on(ma, "web", 2, 5 * MIN)?, vec![na.hostname.clone(), na.hostname.clone()]);
    let moved = cut.elapsed();
    eprintln!(
        "TIMING after B's power cut: marked Down in {:.1} s, replicas running on A in {:.1} s",
        down.as_secs_f64(),
        moved.as_secs_f64()
    );
    assert_eq!(answers(ma.host_port(WEB), 1, 3 * MIN)?, names(&[na]));
    ma.shutdown()?;
    eprintln!("TIMING swarm scenario: {:.0} s", t_all.elapsed().as_secs_f64());
    Ok(())
}
