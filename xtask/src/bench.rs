//! `cargo xtask bench`: boot times against a floor, image sizes, RAM, claim times and
//! build times, printed as a table and written to out/bench.json.
//!
//! Every boot uses the same kernel, squashfs and QEMU settings (KVM or TCG as the host
//! allows, recorded in the report; 2 vCPUs, 2 GiB,
//! direct kernel boot so firmware load time does not blur the comparison). Times are wall
//! time on the host from QEMU's start to a console marker, or with `--icount` the guest's
//! uptime counted in executed instructions, which the host's load does not move.

use crate::build::{self, Ctx};
use crate::error::{Error, IoContext, Result};
use crate::util::Step;
use lightwhale_vm_tests::host;
use lightwhale_vm_tests::{Artifacts, Boot, Config, Disk, Iface, Machine, VmError};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIN: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

#[derive(clap::Args)]
pub struct Args {
    /// Interleaved boots per configuration.
    #[arg(long, default_value_t = 3, value_parser = parse_runs)]
    runs: usize,
    /// Skip the build-time measurements (cold cache, warm, init-only change).
    #[arg(long)]
    no_builds: bool,
    /// Skip the smallest-memory search.
    #[arg(long)]
    no_memory: bool,
    /// Also boot another build, interleaved with this one and the floor: the out/
    /// directory of another checkout after its `cargo xtask iso` (a before/after pair on
    /// the same host minutes). It boots with this tree's kernel command line.
    #[arg(long, value_name = "OUT_DIR")]
    baseline: Option<std::path::PathBuf>,
    /// Count time in executed instructions (QEMU's -icount, TCG only) instead of the
    /// host's wall time: each boot's figures are then the guest's uptime at each marker
    /// and stay within a few tenths of a second from run to run on a busy host, where
    /// wall times move by seconds. For before/after comparisons of the work a boot does.
    #[arg(long)]
    icount: bool,
}

/// Where a boot's times come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// Wall time on the host since QEMU started: what a user waits, moved by the host's load.
    Host,
    /// The guest's uptime under `-icount` (one nanosecond per executed instruction, idle
    /// time skipped): the work a boot takes, steady from run to run.
    Instructions,
}

impl Clock {
    fn configure(self, c: &mut Config) {
        c.icount = self == Clock::Instructions;
    }

    fn describe(self) -> &'static str {
        match self {
            Clock::Host => "host wall time since QEMU started",
            Clock::Instructions => "guest uptime under -icount shift=0,sleep=off (1 ns per instruction)",
        }
    }
}

/// Pure: the kernel's timestamp of a console line (`[   12.345678] text` -> 12.345678).
pub fn printk_time(line: &str) -> Option<f64> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    line[open + 1..close].trim().parse().ok()
}

/// When the console line with `marker` came: its arrival on the host, or its kernel
/// timestamp.
fn time_of(m: &mut Machine, marker: &str, clock: Clock) -> Result<f64> {
    match clock {
        Clock::Host => Ok(secs(m.time_until(marker, 5 * MIN).map_err(vm)?)),
        Clock::Instructions => {
            let line = m.wait_for_console_line(marker, 5 * MIN).map_err(vm)?;
            printk_time(&line)
                .ok_or_else(|| Error::Step { step: "bench", message: format!("no kernel timestamp in {line:?}") })
        }
    }
}

/// The guest's uptime that a probe printed after `marker` on the console.
fn probe_uptime(m: &mut Machine, marker: &str) -> Result<f64> {
    let line = m.wait_for_console_line(marker, 5 * MIN).map_err(vm)?;
    line.split(marker)
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Step { step: "bench", message: format!("no uptime after {marker} in {line:?}") })
}

fn parse_runs(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("a number of boots, at least 1".into()),
    }
}

fn vm(e: VmError) -> Error {
    Error::Step { step: "bench", message: e.to_string() }
}

/// min, median, max
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = s.len();
    let med = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    (s[0], med, s[n - 1])
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn artifacts(ctx: &Ctx) -> Result<Artifacts> {
    std::env::set_var("LIGHTWHALE_OUT", &ctx.out);
    lightwhale_vm_tests::artifacts().map_err(vm)
}

/// `lightwhale.*` markers the init prints, in boot order, with the names used in the table.
const LW_MARKERS: &[(&str, &str)] = &[
    ("kernel start", "Linux version"),
    ("init start", "lightwhale: init started"),
    ("squashfs mounted", "lightwhale: squashfs mounted"),
    ("persistence ready", "lightwhale: persistence ready"),
];

/// What the guest's `docker info` probe prints, followed by its uptime, once Docker answers.
const DOCKER_READY: &str = "DOCKER-READY-";

/// Polls the forwarded SSH port until sshd sends its banner; returns when it did.
fn wait_ssh_banner(port: u16, started: Instant, timeout: Duration) -> Option<f64> {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && &buf[..4] == b"SSH-" {
                return Some(secs(started.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The prepared persistence disk as each measured boot sees it: writes go to a throw-away
/// overlay, so every boot finds the disk as a clean shutdown left it (a server after a
/// reboot) instead of the state the previous measurement's power cut left (an fsck).
fn measured_disk(disk: &Path) -> Disk {
    Disk { path: disk.to_path_buf(), iface: Iface::Ide, snapshot: true }
}

/// A persistence disk claimed by `a` (outside any timing), named after `who`.
fn prepared_disk(a: &Artifacts, who: &str) -> Result<std::path::PathBuf> {
    let disk = lightwhale_vm_tests::work_dir().join(format!("bench-disks/persistence-{who}.img"));
    host::magic_disk(&disk, 700 * MIB).map_err(vm)?;
    let mut c = Config::new(a.kernel_boot("").map_err(vm)?);
    c.disks = vec![Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false }];
    c.forwards.clear();
    let mut m = Machine::start(&format!("bench-prepare-{who}"), c).map_err(vm)?;
    m.login("op", "opsecret", 5 * MIN).map_err(vm)?;
    m.wait_until_succeeds("d info", 5 * MIN).map_err(vm)?;
    m.shutdown().map_err(vm)?;
    Ok(disk)
}

fn lightwhale_boot(a: &Artifacts, disk: &Path, who: &str, run: usize, clock: Clock) -> Result<Timeline> {
    let mut c = Config::new(a.kernel_boot("").map_err(vm)?);
    c.disks = vec![measured_disk(disk)];
    c.forwards = vec![(0, 22)];
    clock.configure(&mut c);
    let mut m = Machine::start(&format!("bench-{who}-{run}"), c).map_err(vm)?;
    let started = m.started;
    let ssh_port = m.host_port(22);
    let ssh = (clock == Clock::Host).then(|| std::thread::spawn(move || wait_ssh_banner(ssh_port, started, 5 * MIN)));
    let mut out = Vec::new();
    for (name, marker) in LW_MARKERS {
        out.push((name.to_string(), time_of(&mut m, marker, clock)?));
    }
    m.login("op", "opsecret", 5 * MIN).map_err(vm)?;
    // The probe runs in the guest so the host sees the moment `docker info` first works.
    m.send(&format!(
        "until docker info >/dev/null 2>&1; do sleep 0.2; done; echo {DOCKER_READY}$(cut -d' ' -f1 /proc/uptime)\n"
    ))
    .map_err(vm)?;
    // sshd is probed from the host, whose clock says nothing about the guest's under
    // -icount; a probe in the guest could only start after the console login, later than
    // sshd answers. So that mode leaves it out.
    if let Some(probe) = ssh {
        let sshd = probe
            .join()
            .ok()
            .flatten()
            .ok_or_else(|| Error::Step { step: "bench", message: "sshd never answered".into() })?;
        out.push(("sshd accepting".into(), sshd));
    }
    let docker = match clock {
        Clock::Host => {
            let at = time_of(&mut m, DOCKER_READY, clock)?;
            m.wait_for_console_line(DOCKER_READY, MIN).map_err(vm)?;
            at
        }
        Clock::Instructions => probe_uptime(&mut m, DOCKER_READY)?,
    };
    out.push(("docker info ok".into(), docker));
    Ok(out)
}

/// RAM in use with Docker idle: MemTotal - MemAvailable, after a boot to a ready Docker.
fn idle_ram(a: &Artifacts, disk: &Path) -> Result<f64> {
    let mut c = Config::new(a.kernel_boot("").map_err(vm)?);
    c.disks = vec![measured_disk(disk)];
    c.forwards.clear();
    let mut m = Machine::start("bench-ram", c).map_err(vm)?;
    m.login("op", "opsecret", 5 * MIN).map_err(vm)?;
    m.wait_until_succeeds("d info", 5 * MIN).map_err(vm)?;
    std::thread::sleep(Duration::from_secs(15));
    let info = m.succeed("cat /proc/meminfo", MIN).map_err(vm)?;
    let kb = |k: &str| -> f64 {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ok(((kb("MemTotal:") - kb("MemAvailable:")) / 1024.0).round())
}

fn floor_boot(a: &Artifacts, floor_initramfs: &Path, run: usize, clock: Clock) -> Result<Timeline> {
    let dir = lightwhale_vm_tests::work_dir();
    let initrd = dir.join("floor-initrd.img");
    let mut data = std::fs::read(floor_initramfs).ctx("bench", floor_initramfs)?;
    data.extend(std::fs::read(&a.rootfs_img).ctx("bench", &a.rootfs_img)?);
    std::fs::write(&initrd, data).ctx("bench", &initrd)?;
    let mut c =
        Config::new(Boot::Kernel { kernel: a.kernel.clone(), initrd, append: lightwhale_vm_tests::CMDLINE.into() });
    c.forwards.clear();
    clock.configure(&mut c);
    let mut m = Machine::start(&format!("bench-floor-{run}"), c).map_err(vm)?;
    let mut out = Vec::new();
    for (name, marker) in [
        ("kernel start", "Linux version"),
        ("init start", "lightwhale: init started"),
        ("squashfs mounted", "lightwhale: squashfs mounted"),
        ("docker info ok", "floor: docker ready"),
    ] {
        out.push((name.to_string(), time_of(&mut m, marker, clock)?));
    }
    Ok(out)
}

/// Boots once with a fresh disk carrying the header; returns the init's claim duration.
fn claim_time(a: &Artifacts, size: u64, tag: &str) -> Result<f64> {
    let dir = lightwhale_vm_tests::work_dir().join("bench-disks");
    std::fs::create_dir_all(&dir).ctx("bench", &dir)?;
    let disk = dir.join(format!("claim-{tag}.img"));
    host::magic_disk(&disk, size).map_err(vm)?;
    let mut c = Config::new(a.kernel_boot("").map_err(vm)?);
    c.disks = vec![Disk { path: disk.clone(), iface: Iface::Ide, snapshot: false }];
    c.forwards.clear();
    let mut m = Machine::start(&format!("bench-claim-{tag}"), c).map_err(vm)?;
    let line = m.wait_for_console_line("lightwhale: claim: claimed", 10 * MIN).map_err(vm)?;
    m.crash();
    let _ = std::fs::remove_file(&disk);
    parse_took(&line).ok_or_else(|| Error::Step { step: "bench", message: format!("no duration in {line:?}") })
}

/// "... (took 0.57 s)" -> 0.57
pub fn parse_took(line: &str) -> Option<f64> {
    let i = line.rfind("(took ")?;
    line[i + 6..].split_whitespace().next()?.parse().ok()
}

/// Does the ISO boot to a working `docker run` with `mb` of RAM?
fn boots_with(a: &Artifacts, mb: u32) -> bool {
    let mut c = Config::new(Boot::IsoAsDisk(a.iso.clone(), Iface::Virtio));
    c.memory_mb = mb;
    c.forwards.clear();
    let Ok(mut m) = Machine::start(&format!("bench-mem-{mb}"), c) else { return false };
    let ok = (|| -> std::result::Result<(), VmError> {
        if m.wait_for_any(&["lightwhale: boot finished", "Kernel panic", "Out of memory"], 4 * MIN)? != 0 {
            return Err(VmError::Setup("the boot failed".into()));
        }
        m.login("op", "opsecret", 2 * MIN)?;
        m.wait_until_succeeds("d info", 4 * MIN)?;
        m.succeed(
            "mkdir -p /tmp/i && cp /usr/bin/busybox /tmp/i/ && tar -C /tmp/i -c busybox | d import - lw/bb",
            4 * MIN,
        )?;
        let out = m.succeed("d run --rm lw/bb /busybox echo docker-run-works", 4 * MIN)?;
        if out.contains("docker-run-works") {
            Ok(())
        } else {
            Err(VmError::Setup(out))
        }
    })();
    println!("    -m {mb}: {}", if ok.is_ok() { "docker run works" } else { "fails" });
    ok.is_ok()
}

fn min_memory(a: &Artifacts) -> Option<u32> {
    let (mut bad, mut good) = (256u32, 1024u32);
    if !boots_with(a, good) {
        return None;
    }
    if boots_with(a, bad) {
        return Some(bad);
    }
    while good - bad > 64 {
        let mid = (bad + good) / 2 / 32 * 32;
        if boots_with(a, mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

fn timed_build(ctx: &Ctx, args: &[&str], env: &[(&str, &Path)]) -> Result<f64> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let start = Instant::now();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ctx.root).args(["xtask", "iso"]).args(args).stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::util::run("bench", &mut cmd, "the build failed")?;
    Ok(secs(start.elapsed()))
}

fn mb(p: &Path) -> f64 {
    std::fs::metadata(p).map(|m| (m.len() as f64 / 1e6 * 10.0).round() / 10.0).unwrap_or(f64::NAN)
}

/// Build times: empty package cache, warm rebuild, rebuild after touching only init/.
fn build_times(ctx: &Ctx) -> Result<Value> {
    let step = Step::start("bench: build times (cold cache, warm, init-only change)");
    let cold_cache = std::env::temp_dir().join(format!("lightwhale-cold-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cold_cache);
    let cold = timed_build(ctx, &["--force"], &[("LIGHTWHALE_CACHE", &cold_cache)])?;
    let _ = std::fs::remove_dir_all(&cold_cache);
    let warm = timed_build(ctx, &["--force"], &[])?;
    let main_rs = ctx.root.join("init/src/main.rs");
    let f = std::fs::File::options().append(true).open(&main_rs).ctx("bench", &main_rs)?;
    f.set_modified(std::time::SystemTime::now()).ctx("bench", &main_rs)?;
    let init_only = timed_build(ctx, &[], &[])?;
    step.done(&format!("cold {cold} s, warm {warm} s, init-only {init_only} s"));
    Ok(json!({ "cold": cold, "warm": warm, "init_only_change": init_only }))
}

/// One boot's markers: (name, seconds since QEMU started).
type Timeline = Vec<(String, f64)>;

const BOOT_MARKS: [&str; 6] =
    ["kernel start", "init start", "squashfs mounted", "persistence ready", "sshd accepting", "docker info ok"];

/// Pure: min/median/max per marker for each series of boots that has any, and the
/// docker-ready ratio of Lightwhale (and of the baseline, if measured) to the floor.
pub fn boot_report(lightwhale: &[Timeline], baseline: &[Timeline], floor: &[Timeline]) -> Value {
    let series = |runs: &[Timeline], name: &str| -> Vec<f64> {
        runs.iter().filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, v)| *v)).collect()
    };
    let mut boot = serde_json::Map::new();
    for (who, runs) in [("lightwhale", lightwhale), ("baseline", baseline), ("floor", floor)] {
        if runs.is_empty() {
            continue;
        }
        let mut m = serde_json::Map::new();
        for n in BOOT_MARKS {
            let v = series(runs, n);
            if !v.is_empty() {
                let (lo, med, hi) = stats(&v);
                m.insert(n.into(), json!({ "runs": v, "min": lo, "median": med, "max": hi }));
            }
        }
        boot.insert(who.into(), Value::Object(m));
    }
    let floor_median = stats(&series(floor, "docker info ok")).1;
    let ratio =
        |runs: &[Timeline]| json!((stats(&series(runs, "docker info ok")).1 / floor_median * 100.0).round() / 100.0);
    boot.insert("docker_ready_ratio_median".into(), ratio(lightwhale));
    if !baseline.is_empty() {
        boot.insert("baseline_docker_ready_ratio_median".into(), ratio(baseline));
    }
    Value::Object(boot)
}

/// Boots Lightwhale, the baseline (if any) and the floor in turn, `runs` times.
fn interleaved_boots(
    a: &Artifacts,
    disk: &Path,
    baseline: Option<&(Artifacts, std::path::PathBuf)>,
    floor: &Path,
    runs: usize,
    clock: Clock,
) -> Result<Value> {
    let step = Step::start(format!(
        "bench: {runs} interleaved boots each of Lightwhale{} and the floor, QEMU with {} acceleration, times: {}",
        if baseline.is_some() { ", the baseline" } else { "" },
        lightwhale_vm_tests::Accel::detect().name(),
        clock.describe()
    ));
    let (mut lw, mut bl, mut fl) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let l = lightwhale_boot(a, disk, "lightwhale", run, clock)?;
        println!("    lightwhale #{run}: {l:?}");
        lw.push(l);
        if let Some((b, disk)) = baseline {
            let l = lightwhale_boot(b, disk, "baseline", run, clock)?;
            println!("    baseline   #{run}: {l:?}");
            bl.push(l);
        }
        let f = floor_boot(a, floor, run, clock)?;
        println!("    floor      #{run}: {f:?}");
        fl.push(f);
    }
    step.done("done");
    Ok(boot_report(&lw, &bl, &fl))
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let accel = lightwhale_vm_tests::Accel::detect();
    let clock = if args.icount { Clock::Instructions } else { Clock::Host };
    if args.icount && accel != lightwhale_vm_tests::Accel::Tcg {
        return Err(Error::Step {
            step: "bench",
            message: "--icount counts the instructions QEMU emulates, which it cannot do with KVM: run it with LIGHTWHALE_ACCEL=tcg".into(),
        });
    }
    let mut report = serde_json::Map::new();

    if !args.no_builds {
        report.insert("build_s".into(), build_times(ctx)?);
    } else {
        build::iso(ctx, build::Options::default())?;
    }
    build::build_init(ctx)?;
    let floor = build::floor_initramfs(ctx)?;
    let a = artifacts(ctx)?;
    let p = build::paths(ctx);
    let sizes = json!({
        "iso": mb(&p.iso), "squashfs": mb(&ctx.build.join("rootfs.squashfs")), "initramfs": mb(&p.initramfs),
        "rootfs_img": mb(&p.rootfs_img), "kernel": mb(&p.kernel),
    });
    report.insert("sizes_mb".into(), sizes);

    let step = Step::start("bench: claim times (700 MiB and 8 GiB sparse disks)");
    let c700 = claim_time(&a, 700 * MIB, "700M")?;
    let c8g = claim_time(&a, 8 * 1024 * MIB, "8G")?;
    step.done(&format!("700 MiB {c700} s, 8 GiB {c8g} s"));
    report.insert("claim_s".into(), json!({ "700MiB": c700, "8GiB": c8g }));

    // Claimed persistence disks for the measured boots, claimed outside the timing (each
    // build claims its own: the on-disk layout may differ between versions).
    let disk = prepared_disk(&a, "lightwhale")?;
    let baseline = match &args.baseline {
        Some(dir) => {
            let b = Artifacts::in_out_dir(dir).map_err(vm)?;
            let disk = prepared_disk(&b, "baseline")?;
            report.insert(
                "baseline".into(),
                json!({
                    "out_dir": dir.display().to_string(),
                    "rootfs_img": mb(&b.rootfs_img),
                    "kernel_cmdline": lightwhale_vm_tests::CMDLINE,
                }),
            );
            Some((b, disk))
        }
        None => None,
    };

    report.insert("boot_s".into(), interleaved_boots(&a, &disk, baseline.as_ref(), &floor, args.runs, clock)?);

    let step = Step::start("bench: RAM");
    let idle = idle_ram(&a, &disk)?;
    if let Some((b, disk)) = &baseline {
        let idle = idle_ram(b, disk)?;
        if let Some(v) = report.get_mut("baseline") {
            v["idle_ram_mb"] = json!(idle);
        }
    }
    let min_mb = if !args.no_memory { min_memory(&a) } else { None };
    step.done(&format!("idle {idle} MB used, smallest -m {min_mb:?}"));
    report.insert("ram_mb".into(), json!({ "idle_used": idle, "min_boot_to_docker_run": min_mb }));

    report.insert("qemu".into(), json!({ "accel": accel.name(), "clock": clock.describe(), "tcg_threads": "single", "cpus": 2, "memory_mb": 2048, "boot": "direct kernel (same kernel, initrds, cmdline as the ISO)" }));
    let report = Value::Object(report);
    let path = ctx.out.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default() + "\n").ctx("bench", &path)?;
    print_table(&report);
    println!("\nwritten to {}", path.display());
    Ok(())
}

fn print_table(r: &Value) {
    println!("\nQEMU acceleration: {}", r["qemu"]["accel"].as_str().unwrap_or("?"));
    println!("times: {}", r["qemu"]["clock"].as_str().unwrap_or("?"));
    let baseline = r["boot_s"].get("baseline").is_some();
    println!(
        "\n{:<28} {:>10} {:>10} {:>10}   {:>10}{}",
        "boot (s)",
        "min",
        "median",
        "max",
        "floor med",
        if baseline { format!(" {:>12}", "baseline med") } else { String::new() }
    );
    for n in BOOT_MARKS {
        let l = &r["boot_s"]["lightwhale"][n];
        let f = &r["boot_s"]["floor"][n]["median"];
        let fmt = |v: &Value| v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        let b = &r["boot_s"]["baseline"][n]["median"];
        println!(
            "{:<28} {:>10} {:>10} {:>10}   {:>10}{}",
            n,
            fmt(&l["min"]),
            fmt(&l["median"]),
            fmt(&l["max"]),
            fmt(f),
            if baseline { format!(" {:>12}", fmt(b)) } else { String::new() }
        );
    }
    println!("docker-ready ratio to floor (medians): {}", r["boot_s"]["docker_ready_ratio_median"]);
    if baseline {
        println!(
            "baseline's ratio to floor (medians):   {} ({})",
            r["boot_s"]["baseline_docker_ready_ratio_median"],
            r["baseline"]["out_dir"].as_str().unwrap_or("?")
        );
    }
    println!("\nsizes (MB): {}", r["sizes_mb"]);
    println!("RAM (MB):   {}", r["ram_mb"]);
    println!("claim (s):  {}", r["claim_s"]);
    if let Some(b) = r.get("build_s") {
        println!("build (s):  {b}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_parsing() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0]), (1.0, 2.5, 4.0));
        assert_eq!(parse_took("[ 1.2] lightwhale: claim: claimed sda: sda1 is ext4 (took 0.57 s)"), Some(0.57));
        assert_eq!(parse_took("nothing"), None);
        assert_eq!(printk_time("[   12.345678] lightwhale: init started"), Some(12.345678));
        assert_eq!(printk_time("\r[    0.000000] Linux version 6.12"), Some(0.0));
        assert_eq!(printk_time("lightwhale: no timestamp"), None);
        assert_eq!(printk_time("[ not a number] x"), None);
    }

    fn boot(docker: f64) -> Timeline {
        vec![("kernel start".into(), 2.0), ("docker info ok".into(), docker)]
    }

    #[test]
    fn report_without_and_with_a_baseline() {
        let floor = [boot(20.0), boot(30.0), boot(25.0)];
        let r = boot_report(&[boot(30.0), boot(40.0), boot(50.0)], &[], &floor);
        assert_eq!(r["lightwhale"]["docker info ok"]["median"], 40.0);
        assert_eq!(r["docker_ready_ratio_median"], 1.6);
        assert!(r.get("baseline").is_none() && r.get("baseline_docker_ready_ratio_median").is_none());
        assert!(r["floor"].get("persistence ready").is_none(), "a marker no boot has is left out");

        let r = boot_report(&[boot(40.0)], &[boot(45.0), boot(35.0), boot(50.0)], &floor);
        assert_eq!(r["baseline"]["docker info ok"]["min"], 35.0);
        assert_eq!(r["baseline_docker_ready_ratio_median"], 1.8);
        assert_eq!(r["docker_ready_ratio_median"], 1.6);
    }
}
