//! `lightwhale-wifi`: the `wifi` service (modules/wifi/init.ron), which the init runs while
//! /etc/wpa_supplicant/lightwhale.conf exists. It keeps one wpa_supplicant running for each
//! Wi-Fi interface: started when the interface appears (a driver whose firmware loads late,
//! a USB adapter plugged in), restarted with backoff when it exits, stopped when the
//! interface goes, and told to re-read the configuration when `setup-wifi` changes it.
//! (Debian's wpa_supplicant is built without `-M`, its own way of matching interfaces.)

use lightwhale_tools::wifi;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often interfaces and the configuration are looked at.
const POLL: Duration = Duration::from_secs(1);
/// A wpa_supplicant that ran this long before exiting is restarted without delay.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// One interface's wpa_supplicant.
struct Slot {
    child: Option<(Child, Instant)>,
    failures: u32,
    retry_at: Option<Instant>,
}

fn log(message: &str) {
    println!("lightwhale-wifi: {message}");
}

fn start(iface: &str) -> std::io::Result<Child> {
    Command::new(wifi::WPA_SUPPLICANT).args(["-i", iface, "-c", wifi::CONFIG, "-D", "nl80211"]).spawn()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// The wpa_supplicants, one per interface.
#[derive(Default)]
struct Runner {
    slots: BTreeMap<String, Slot>,
}

impl Runner {
    /// Exited wpa_supplicants are restarted after a delay that grows while they keep failing.
    fn reap(&mut self, now: Instant) {
        for (iface, slot) in self.slots.iter_mut() {
            let Some((child, since)) = slot.child.as_mut() else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                if since.elapsed() >= HEALTHY_RUN {
                    slot.failures = 0;
                }
                let delay = wifi::restart_delay(slot.failures);
                slot.failures += 1;
                log(&format!("{iface}: wpa_supplicant exited ({status}); restarting in {} s", delay.as_secs()));
                slot.child = None;
                slot.retry_at = Some(now + delay);
            }
        }
    }

    /// Starts wpa_supplicant on new interfaces, stops it where the interface went away.
    fn follow_interfaces(&mut self, present: &[String], now: Instant) {
        let running: BTreeSet<String> =
            self.slots.iter().filter(|(_, s)| s.child.is_some()).map(|(i, _)| i.clone()).collect();
        let blocked: BTreeSet<String> =
            self.slots.iter().filter(|(_, s)| s.retry_at.is_some_and(|t| t > now)).map(|(i, _)| i.clone()).collect();
        let plan = wifi::plan(present, &running, &blocked);
        for iface in plan.stop {
            if let Some((mut child, _)) = self.slots.remove(&iface).and_then(|s| s.child) {
                log(&format!("{iface}: interface gone; stopping its wpa_supplicant"));
                signal(&child, libc::SIGTERM);
                let _ = child.wait();
            }
        }
        self.slots.retain(|iface, slot| slot.child.is_some() || present.contains(iface));
        for iface in plan.start {
            let slot = self.slots.entry(iface.clone()).or_insert(Slot { child: None, failures: 0, retry_at: None });
            match start(&iface) {
                Ok(child) => {
                    log(&format!("{iface}: wpa_supplicant started (pid {})", child.id()));
                    slot.child = Some((child, now));
                    slot.retry_at = None;
                }
                Err(e) => {
                    let delay = wifi::restart_delay(slot.failures);
                    slot.failures += 1;
                    log(&format!(
                        "{iface}: cannot start {}: {e}; retrying in {} s",
                        wifi::WPA_SUPPLICANT,
                        delay.as_secs()
                    ));
                    slot.retry_at = Some(now + delay);
                }
            }
        }
    }

    /// Asks every wpa_supplicant to re-read a changed configuration.
    fn reload(&self, before: &wifi::Fingerprint, now: &wifi::Fingerprint) {
        let pids: BTreeMap<String, u32> =
            self.slots.iter().filter_map(|(i, s)| s.child.as_ref().map(|(c, _)| (i.clone(), c.id()))).collect();
        for iface in wifi::reload(before, now, &pids) {
            if let Some((child, _)) = self.slots.get(&iface).and_then(|s| s.child.as_ref()) {
                log(&format!("{iface}: configuration changed; wpa_supplicant re-reads it"));
                signal(child, libc::SIGHUP);
            }
        }
    }

    /// SIGTERM to every wpa_supplicant, SIGKILL to those still there after 5 s.
    fn stop(&mut self) {
        for (child, _) in self.slots.values().filter_map(|s| s.child.as_ref()) {
            signal(child, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (child, _) in self.slots.values_mut().filter_map(|s| s.child.as_mut()) {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    if std::env::args().nth(1).is_some() {
        println!("lightwhale-wifi runs wpa_supplicant for every Wi-Fi interface; the init starts it once `setup-wifi` has configured Wi-Fi. It takes no arguments.");
        return;
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop as *const () as libc::sighandler_t) };
    }
    let mut runner = Runner::default();
    let mut config = wifi::fingerprint(Path::new(wifi::CONFIG));
    while !STOP.load(Ordering::SeqCst) {
        let now = Instant::now();
        runner.reap(now);
        runner.follow_interfaces(&wifi::interfaces(Path::new(wifi::SYS_CLASS_NET)), now);
        let current = wifi::fingerprint(Path::new(wifi::CONFIG));
        runner.reload(&config, &current);
        config = current;
        std::thread::sleep(POLL);
    }
    log("stopping");
    runner.stop();
}
