//! `cargo xtask cluster [N] [--swarm]`: N Lightwhale machines on one private segment, each
//! with a fresh persistence disk and a seed that names it and addresses it (the nodes are
//! `lightwhale_vm_tests::cluster`'s, as in the swarm scenario). They run until Ctrl-C,
//! which presses every machine's power button and waits for them to shut down.

use crate::build::{self, Ctx};
use crate::error::{Error, Result};
use crate::util::Step;
use lightwhale_vm_tests::cluster::{self, Node};
use lightwhale_vm_tests::{qmp, segment, Boot, Machine, VmError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// How many nodes (1-9): lw-node1 .. lw-nodeN at 10.77.0.11 .. 10.77.0.1N.
    #[arg(default_value_t = 2)]
    nodes: usize,
    /// Form the swarm too: `docker swarm init` on lw-node1, the others join as workers.
    #[arg(long)]
    swarm: bool,
    /// Boot the existing ISO without rebuilding.
    #[arg(long)]
    no_build: bool,
}

/// How long a node may take from power-on to a ready Docker (TCG on a busy host is slow).
const BOOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long the machines get to shut down after the power button before they are killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(120);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn vm(e: VmError) -> Error {
    Error::Step { step: "cluster", message: e.to_string() }
}

/// What stopping a node needs, kept apart from the `Machine` (which the boot thread may
/// still hold when Ctrl-C comes).
struct Handle {
    name: String,
    pid: u32,
    qmp: std::path::PathBuf,
}

/// Whether process `pid` is gone (or only a zombie: QEMU has exited, nobody reaped it yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may hold spaces.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The ACPI power button on every node, then waits; what is still running then is killed.
fn stop_all(handles: &[Handle]) {
    let step = Step::start(format!("shutting down {} nodes (ACPI power button)", handles.len()));
    for h in handles {
        if let Err(e) = qmp::command(&h.qmp, "system_powerdown") {
            eprintln!("{}: power button: {e}", h.name);
        }
    }
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    while Instant::now() < deadline && !handles.iter().all(|h| exited(h.pid)) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut killed = Vec::new();
    for h in handles.iter().filter(|h| !exited(h.pid)) {
        // SAFETY: kill(2) on a process this program started and has not reaped.
        unsafe { libc::kill(h.pid as libc::pid_t, libc::SIGKILL) };
        killed.push(h.name.as_str());
    }
    match killed.is_empty() {
        true => step.done("all powered off"),
        false => step.done(&format!("killed after {} s: {}", SHUTDOWN_TIMEOUT.as_secs(), killed.join(", "))),
    };
}

/// Logs in on each console, waits for Docker and the segment, and forms the swarm when
/// asked; prints what to do next.
fn bring_up(machines: &mut [Machine], nodes: &[Node], swarm: bool, dir: &Path) -> std::result::Result<(), VmError> {
    let step = Step::start(format!("booting {} nodes (under TCG this takes minutes)", nodes.len()));
    for (m, node) in machines.iter_mut().zip(nodes) {
        if swarm {
            m.login("op", "opsecret", BOOT_TIMEOUT)?;
            cluster::wait_ready(m, node, BOOT_TIMEOUT)?;
        } else {
            m.wait_for_console_text("login: ", BOOT_TIMEOUT)?;
        }
        eprintln!("  {} is up ({:.0} s)", node.hostname, m.started.elapsed().as_secs_f64());
    }
    step.done("up");
    let ports: Vec<u16> = machines.iter().map(|m| m.host_port(22)).collect();
    if swarm {
        let step = Step::start(format!("forming the swarm: init on {}, the others join", nodes[0].hostname));
        cluster::form_swarm(machines, nodes, BOOT_TIMEOUT)?;
        step.done("every node Ready");
        println!("{}", machines[0].succeed("docker node ls", Duration::from_secs(60))?);
    } else {
        println!(
            "\nTo form the swarm (password opsecret; Docker may need a minute after the login prompt):\n\n{}",
            cluster::manual_commands(nodes, &ports, &dir.join("known_hosts"))
        );
    }
    println!("The cluster runs until Ctrl-C, which shuts every node down cleanly.");
    Ok(())
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let nodes = cluster::nodes(args.nodes).map_err(|e| Error::Usage(format!("cluster: {e}")))?;
    let iso = build::iso_to_boot(ctx, args.no_build, "cluster")?;
    let dir = ctx.root.join("target/cluster");
    // New nodes have new host keys, and host ports are chosen afresh: keys pinned by an
    // earlier run would only make ssh refuse a port that now leads to another node.
    let _ = std::fs::remove_file(dir.join("known_hosts"));
    // Before the first QEMU starts: from here on Ctrl-C only sets the flag. QEMU runs in
    // process groups of its own, so the terminal's SIGINT does not cut their power.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let segment = segment::Segment::new(&dir.join("seg"), nodes.len()).map_err(vm)?;
    let mut machines = Vec::new();
    let mut handles = Vec::new();
    let started = (|| -> std::result::Result<(), VmError> {
        for (node, port) in nodes.iter().zip(&segment.ports) {
            let node_dir = dir.join(&node.hostname);
            let (disk, seed) = cluster::prepare(&node_dir, node)?;
            let config = cluster::machine_config(Boot::Cdrom(iso.clone()), &disk, &seed, port.clone(), &[22]);
            let m = Machine::start_in(&node.hostname, &node_dir.join("vm"), config)?;
            handles.push(Handle { name: node.hostname.clone(), pid: m.pid().unwrap_or(0), qmp: m.qmp_socket() });
            println!(
                "{}: {}/{}, ssh -p {} op@127.0.0.1 (password opsecret), console log {}",
                node.hostname,
                node.addr,
                cluster::PREFIX_LEN,
                m.host_port(22),
                node_dir.join("vm/console.log").display()
            );
            machines.push(m);
        }
        Ok(())
    })();
    if let Err(e) = started {
        stop_all(&handles);
        return Err(vm(e));
    }
    // The waits run in a thread so Ctrl-C is noticed at once, even during a long boot.
    let (swarm, nodes_up, dir_up) = (args.swarm, nodes.clone(), dir.clone());
    let worker = std::thread::spawn(move || {
        let r = bring_up(&mut machines, &nodes_up, swarm, &dir_up);
        (machines, r)
    });
    let mut failure = None;
    let mut worker = Some(worker);
    // Kept, not dropped (dropping a Machine kills its QEMU), until the nodes are shut down.
    let mut kept = None;
    while !INTERRUPTED.load(Ordering::SeqCst) {
        if worker.as_ref().is_some_and(|w| w.is_finished()) {
            let (machines, r) = worker.take().expect("present").join().expect("the boot thread does not panic");
            // The machines stay up after a failure too: the console logs and SSH show why.
            if let Err(e) = r {
                eprintln!("error: {e}\nThe nodes keep running for a look; Ctrl-C stops them.");
                failure = Some(e);
            }
            kept = Some(machines);
        }
        if handles.iter().all(|h| exited(h.pid)) {
            eprintln!("every node has powered off");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!();
    stop_all(&handles);
    drop(kept);
    drop(segment);
    match failure {
        Some(e) => Err(vm(e)),
        None => Ok(()),
    }
}
