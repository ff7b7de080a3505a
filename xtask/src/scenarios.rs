//! The VM scenarios, side by side: each scenario file of lightwhale-vm-tests is a test
//! binary that runs as a process of its own, its output in `target/vm-tests/<file>.log`, as
//! many at a time as the host's cores and memory carry. A test machine under TCG keeps one
//! host core busy (`thread=single`), so on a two-core host two scenarios take about the
//! time of one. A failing scenario does not stop the others; its output is printed when it
//! ends.

use crate::build::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::util::Step;
use lightwhale_vm_tests::{machines_at_once, Accel};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Memory one test machine needs on the host: its guest RAM and QEMU's own.
const MIB_PER_MACHINE: u64 = lightwhale_vm_tests::qemu::MEMORY_MB as u64 + 512;

/// One scenario file's test binary.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub exe: PathBuf,
}

/// How many test machines this host runs at a time (see `machine_slots`).
pub fn host_slots(accel: Accel) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    machine_slots(cores, available_kib / 1024, accel, lightwhale_vm_tests::qemu::VCPUS as usize)
}

/// Pure: how many test machines the host runs at a time: a core each under TCG (one host
/// thread per machine), as many as the guest has vCPUs under KVM, and never more than the
/// available memory holds. At least one.
pub fn machine_slots(cores: usize, mem_available_mib: u64, accel: Accel, vcpus: usize) -> usize {
    let per_machine = match accel {
        Accel::Tcg => 1,
        Accel::Kvm => vcpus.max(1),
    };
    let by_memory = (mem_available_mib / MIB_PER_MACHINE) as usize;
    (cores / per_machine).min(by_memory).max(1)
}

/// Pure: the order in which scenarios start, those with the most machines at once first
/// (they need the host to themselves the longest), then by name.
pub fn start_order(mut scenarios: Vec<Scenario>) -> VecDeque<Scenario> {
    scenarios.sort_by(|a, b| machines_at_once(&b.name).cmp(&machines_at_once(&a.name)).then(a.name.cmp(&b.name)));
    scenarios.into()
}

/// Pure: whether a scenario of `machines` may start while `busy` of `slots` are taken. One
/// that needs more than the host has runs alone.
pub fn may_start(machines: usize, busy: usize, slots: usize) -> bool {
    busy == 0 || busy + machines <= slots
}

/// The scenario binaries, built by cargo (`--no-run`), read from its JSON messages.
pub fn build(ctx: &Ctx, cargo: &str) -> Result<Vec<Scenario>> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ctx.root).args([
        "test",
        "-p",
        "lightwhale-vm-tests",
        "--tests",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| Error::Step {
        step: "test",
        message: format!("cannot run cargo to build the VM scenarios: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Step { step: "test", message: "building the VM scenarios failed (see above)".into() });
    }
    Ok(test_binaries(&String::from_utf8_lossy(&out.stdout)))
}

/// Pure: the integration-test binaries among cargo's JSON messages (`tests/<name>.rs`).
pub fn test_binaries(cargo_json: &str) -> Vec<Scenario> {
    cargo_json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test")))
        .filter_map(|m| {
            Some(Scenario {
                name: m["target"]["name"].as_str()?.to_string(),
                exe: PathBuf::from(m["executable"].as_str()?),
            })
        })
        .collect()
}

struct Running {
    scenario: Scenario,
    child: Child,
    log: PathBuf,
    started: Instant,
}

/// Runs the scenarios, `slots` machines at a time; test names filtered by `filter`.
pub fn run(ctx: &Ctx, scenarios: Vec<Scenario>, slots: usize, accel: Accel, filter: &[String]) -> Result<()> {
    let logs = lightwhale_vm_tests::work_dir();
    std::fs::create_dir_all(&logs).ctx("test", &logs)?;
    let step =
        Step::start(format!("VM scenarios (QEMU with {} acceleration, {slots} machine(s) at a time)", accel.name()));
    println!("    each scenario's output: {}/<scenario>.log", logs.display());
    let mut pending = start_order(scenarios);
    let mut running: Vec<Running> = Vec::new();
    let mut failed = Vec::new();
    let mut last_report = Instant::now();
    loop {
        if last_report.elapsed() >= SCENARIO_HEARTBEAT && !running.is_empty() {
            report_running(&running, pending.len());
            last_report = Instant::now();
        }
        let busy: usize = running.iter().map(|r| machines_at_once(&r.scenario.name)).sum();
        match pending.front() {
            Some(next) if may_start(machines_at_once(&next.name), busy, slots) => {
                let scenario = pending.pop_front().expect("front");
                running.push(start(ctx, scenario, &logs, filter)?);
                continue;
            }
            None if running.is_empty() => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut i = 0;
        while i < running.len() {
            match running[i].child.try_wait() {
                Ok(Some(status)) => {
                    let r = running.swap_remove(i);
                    if !finished(&r, status.success()) {
                        failed.push(r.scenario.name.clone());
                    }
                }
                _ => i += 1,
            }
        }
    }
    if !failed.is_empty() {
        return Err(Error::Step {
            step: "test",
            message: format!(
                "VM scenario(s) failed: {} (their output is above and in {logs}/<scenario>.log; console logs in {logs}/<machine>/console.log)",
                failed.join(", "),
                logs = logs.display()
            ),
        });
    }
    step.done("passed");
    Ok(())
}

fn start(ctx: &Ctx, scenario: Scenario, logs: &Path, filter: &[String]) -> Result<Running> {
    let log = logs.join(format!("{}.log", scenario.name));
    let file = std::fs::File::create(&log).ctx("test", &log)?;
    let err = file.try_clone().ctx("test", &log)?;
    println!("    {}: started", scenario.name);
    let child = Command::new(&scenario.exe)
        // Where `cargo test` would run it.
        .current_dir(ctx.root.join("vm-tests"))
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .args(filter)
        .env("LIGHTWHALE_OUT", &ctx.out)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::Step { step: "test", message: format!("cannot run {}: {e}", scenario.exe.display()) })?;
    Ok(Running { scenario, child, log, started: Instant::now() })
}

/// How often the running scenarios' latest steps are shown (a scenario takes minutes).
const SCENARIO_HEARTBEAT: Duration = Duration::from_secs(30);

/// One line per running scenario: how long it has run and the last line of its output.
fn report_running(running: &[Running], waiting: usize) {
    for r in running {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        println!("    ... {}: {} s, {}", r.scenario.name, r.started.elapsed().as_secs(), latest_step(&text));
    }
    if waiting > 0 {
        println!("    ... {waiting} scenario(s) waiting for a free machine slot");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Pure: what a scenario is doing, from its output so far: its last non-empty line.
pub fn latest_step(output: &str) -> String {
    match output.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => lightwhale_image::cmd::progress_summary(l),
        None => "starting".into(),
    }
}

/// Reports a scenario that ended; a failed one's whole output is printed. Returns whether
/// it passed.
fn finished(r: &Running, passed: bool) -> bool {
    let secs = r.started.elapsed().as_secs();
    if passed {
        println!("    {}: passed in {secs} s", r.scenario.name);
    } else {
        println!("    {}: FAILED after {secs} s; its output ({}):", r.scenario.name, r.log.display());
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        for line in text.lines() {
            println!("    | {line}");
        }
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> Scenario {
        Scenario { name: name.into(), exe: PathBuf::from(format!("/t/{name}")) }
    }

    #[test]
    fn slots_follow_cores_accel_and_memory() {
        assert_eq!(machine_slots(2, 20_000, Accel::Tcg, 2), 2, "a core per TCG machine");
        assert_eq!(machine_slots(16, 20_000, Accel::Kvm, 2), 7, "memory limits: 20000 / 2560");
        assert_eq!(machine_slots(4, 64_000, Accel::Kvm, 2), 2, "two vCPUs each under KVM");
        assert_eq!(machine_slots(1, 1_000, Accel::Tcg, 2), 1, "always at least one");
    }

    #[test]
    fn scenarios_with_more_machines_start_first_then_by_name() {
        let order: Vec<String> = start_order(vec![s("wifi"), s("hardening"), s("swarm"), s("immutable")])
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(order, ["swarm", "hardening", "immutable", "wifi"]);
    }

    #[test]
    fn a_scenario_starts_only_where_its_machines_fit() {
        assert!(may_start(1, 0, 2) && may_start(1, 1, 2));
        assert!(!may_start(1, 2, 2), "both slots taken");
        assert!(!may_start(2, 1, 2), "the swarm waits for the host to itself");
        assert!(may_start(3, 0, 2), "more than the host has: alone");
    }

    #[test]
    fn a_running_scenario_is_described_by_its_last_line() {
        assert_eq!(latest_step(""), "starting");
        assert_eq!(
            latest_step("running 1 test\n[12.3 s] persistence: waiting for login\n\n"),
            "[12.3 s] persistence: waiting for login"
        );
    }

    #[test]
    fn test_binaries_are_read_from_cargos_messages() {
        let json = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"lightwhale_vm_tests"},"executable":"/t/lib-1"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"swarm"},"executable":"/t/swarm-0123456789abcdef"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"lightwhale-qemu"},"executable":"/t/q"}
{"reason":"build-finished","success":true}
not json"#;
        assert_eq!(
            test_binaries(json),
            [Scenario { name: "swarm".into(), exe: PathBuf::from("/t/swarm-0123456789abcdef") }]
        );
    }
}
