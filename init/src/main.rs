//! PID 1 of Lightwhale. Stage 1 (initramfs) -> the system assembled in the image (drivers,
//! persistence, overlays) -> stage 2 (services) -> shutdown, all in this one process.

use lightwhale_init::boot::{assemble, stage1, stage2};
use lightwhale_init::fatal;

fn main() {
    if std::process::id() != 1 {
        let arg = std::env::args().nth(1).unwrap_or_default();
        if arg == "--version" {
            println!("lightwhale-init {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        eprintln!("lightwhale-init is Lightwhale's PID 1 and only runs as the first process of the system.");
        eprintln!("Use `reboot`, `poweroff` or `halt` to control a running system.");
        std::process::exit(2);
    }
    lightwhale_init::install_panic_hook();
    let opts = match stage1::run() {
        Ok(o) => o,
        Err(e) => fatal(&e.to_string()),
    };
    let system = match assemble::assemble(&opts) {
        Ok(s) => s,
        Err(e) => fatal(&format!("early boot: {e}")),
    };
    stage2::run(system, &opts)
}
