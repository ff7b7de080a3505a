//! Progress lines: `==> name` when a step starts, `    name: detail (N s)` when it ends.

use std::io::Write;
use std::time::Instant;

pub struct Step {
    name: String,
    start: Instant,
}

impl Step {
    pub fn start(name: impl Into<String>) -> Step {
        let name = name.into();
        println!("==> {name}");
        let _ = std::io::stdout().flush();
        Step { name, start: Instant::now() }
    }

    /// Prints the closing line; returns the step's duration in seconds.
    pub fn done(self, detail: &str) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        println!("    {}: {detail} ({secs:.1} s)", self.name);
        secs
    }
}
