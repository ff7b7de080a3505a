//! Progress lines: `==> name` when a step starts, `    name: detail (N s)` when it ends.
//! A step that works in this process for long (no command whose output could show it) is
//! started with `Step::ticking`: every `cmd::HEARTBEAT` it says how long it has run and
//! which phase it is in.

use crate::cmd::HEARTBEAT;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub struct Step {
    name: String,
    start: Instant,
    ticker: Option<Ticker>,
}

/// The phase a ticking step is in, and whether it has ended.
#[derive(Default)]
struct TickState {
    phase: String,
    ended: bool,
}

struct Ticker {
    state: Arc<(Mutex<TickState>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Step {
    pub fn start(name: impl Into<String>) -> Step {
        let name = name.into();
        println!("==> {name}");
        let _ = std::io::stdout().flush();
        Step { name, start: Instant::now(), ticker: None }
    }

    /// A step that also reports its phase and duration every `HEARTBEAT` until it is done.
    pub fn ticking(name: impl Into<String>) -> Step {
        let mut step = Step::start(name);
        let state = Arc::new((Mutex::new(TickState::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        let start = step.start;
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*shared;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            // Checked before every wait: the step may have ended before this thread ran.
            while !s.ended {
                let (next, timeout) = wake.wait_timeout(s, HEARTBEAT).unwrap_or_else(|e| e.into_inner());
                s = next;
                if timeout.timed_out() && !s.ended {
                    let phase = if s.phase.is_empty() { "working" } else { &s.phase };
                    println!("    ... {} s: {phase}", start.elapsed().as_secs());
                    let _ = std::io::stdout().flush();
                }
            }
        });
        step.ticker = Some(Ticker { state, thread });
        step
    }

    /// What a ticking step is doing now (shown by its next heartbeat).
    pub fn phase(&self, phase: &str) {
        if let Some(t) = &self.ticker {
            t.state.0.lock().unwrap_or_else(|e| e.into_inner()).phase = phase.to_string();
        }
    }

    /// Prints the closing line; returns the step's duration in seconds.
    pub fn done(mut self, detail: &str) -> f64 {
        self.stop_ticking();
        let secs = self.start.elapsed().as_secs_f64();
        println!("    {}: {detail} ({secs:.1} s)", self.name);
        secs
    }

    fn stop_ticking(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.state.0.lock().unwrap_or_else(|e| e.into_inner()).ended = true;
            t.state.1.notify_all();
            let _ = t.thread.join();
        }
    }
}

/// A step that fails ends its ticker too.
impl Drop for Step {
    fn drop(&mut self) {
        self.stop_ticking();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticking_step_ends_its_ticker_when_done_or_dropped() {
        let step = Step::ticking("test: ticking");
        step.phase("phase one");
        let secs = step.done("ok");
        assert!(secs < 1.0, "done returns at once, without waiting for a heartbeat: {secs}");
        let dropped = Step::ticking("test: dropped");
        let t = Instant::now();
        drop(dropped);
        assert!(t.elapsed() < HEARTBEAT / 2);
    }
}
