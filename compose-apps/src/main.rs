//! `lightwhale-compose-apps`: the boot-time starter of the Compose apps (see the library).
//! The init runs it once per boot (modules/provision/init.ron); run it by hand with sudo to
//! start the apps again.

use clap::Parser;
use lightwhale_compose_apps::{run, Docker, APPS_DIR, STATUS_FILE};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Start every Compose app under /etc/lightwhale/compose/<name>/ (docker compose -p <name> up -d)"
)]
struct Cli {
    /// Where the apps are, one directory each.
    #[arg(long, default_value = APPS_DIR)]
    dir: PathBuf,
    /// Where the outcome is written (JSON).
    #[arg(long, default_value = STATUS_FILE)]
    status: PathBuf,
    /// The Docker CLI.
    #[arg(long, default_value = "/usr/bin/docker")]
    docker: PathBuf,
    /// Longest wait for Docker to answer, in seconds.
    #[arg(long, default_value_t = 300)]
    wait: u64,
    /// Longest one project's `up -d` may take, in seconds.
    #[arg(long, default_value_t = 900)]
    project_timeout: u64,
}

fn main() {
    let cli = Cli::parse();
    let docker = Docker {
        program: &cli.docker,
        ready_timeout: Duration::from_secs(cli.wait),
        project_timeout: Duration::from_secs(cli.project_timeout),
    };
    match run(&cli.dir, &cli.status, &docker, &mut |l| println!("compose-apps: {l}")) {
        Ok(st) if st.projects.iter().all(|p| p.ok) => {}
        Ok(st) => {
            let failed: Vec<&str> = st.projects.iter().filter(|p| !p.ok).map(|p| p.name.as_str()).collect();
            eprintln!("compose-apps: failed: {}", failed.join(", "));
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("compose-apps: {e}");
            std::process::exit(2);
        }
    }
}
