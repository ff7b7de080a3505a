//! Lightwhale's convention for apps: every directory under /etc/lightwhale/compose/ with a
//! Compose file is a project, started with `docker compose -p <name> up -d` at every boot
//! once Docker answers. Projects run one after the other; a failing one is reported and
//! the next one starts anyway. The outcome goes to /run/lightwhale/compose.json for
//! `lightwhale status`; Compose's own output goes to this program's log
//! (/var/log/compose-apps.log, from the init's supervisor).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the apps live (in the persisted /etc; `write_files` in a NoCloud seed puts them here).
pub const APPS_DIR: &str = "/etc/lightwhale/compose";
/// The outcome of this boot's run, as JSON (see `Status`).
pub const STATUS_FILE: &str = "/run/lightwhale/compose.json";
/// The file names `docker compose` itself looks for, in its order.
pub const COMPOSE_FILES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error("reading {dir}: {source}")]
    List { dir: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Status { path: PathBuf, source: std::io::Error },
}

/// One project directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    /// None: the directory holds no Compose file.
    pub file: Option<PathBuf>,
}

/// This boot's run, written to STATUS_FILE:
/// `{"docker_ready": bool, "projects": [{"name": "web", "directory": "/etc/...", "ok": true,
///   "exit_code": 0, "error": null, "seconds": 3.2}]}`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub docker_ready: bool,
    pub projects: Vec<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub directory: String,
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub seconds: f64,
}

/// Compose's rule for project names: lower-case letters, digits, `-` and `_`, starting
/// with a letter or digit.
pub fn valid_project_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
}

/// The project directories under `dir`, by name. A missing `dir` means no apps.
pub fn discover(dir: &Path) -> Result<Vec<Project>, AppsError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(AppsError::List { dir: dir.into(), source }),
    };
    let mut v: Vec<Project> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let d = e.path();
            Project {
                name: e.file_name().to_string_lossy().into_owned(),
                file: COMPOSE_FILES.iter().map(|f| d.join(f)).find(|p| p.is_file()),
                dir: d,
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// How to reach Docker; the tests use a stand-in script.
pub struct Docker<'a> {
    pub program: &'a Path,
    /// Longest wait for `docker info` to answer.
    pub ready_timeout: Duration,
    /// Longest a project's `up -d` may take (image builds and pulls included).
    pub project_timeout: Duration,
}

impl Docker<'_> {
    /// Waits until the daemon answers `docker info`.
    pub fn wait_ready(&self) -> bool {
        let start = Instant::now();
        loop {
            let ok = Command::new(self.program)
                .args(["info", "--format", "{{.ServerVersion}}"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            if start.elapsed() >= self.ready_timeout {
                return false;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// `docker compose -p NAME --project-directory DIR -f FILE up -d`, its output on ours.
    pub fn up(&self, p: &Project) -> Outcome {
        let start = Instant::now();
        let mut out = Outcome {
            name: p.name.clone(),
            directory: p.dir.display().to_string(),
            ok: false,
            exit_code: None,
            error: None,
            seconds: 0.0,
        };
        let result = self.run_up(p);
        out.seconds = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        match result {
            Ok(code) => {
                out.exit_code = Some(code);
                out.ok = code == 0;
                if code != 0 {
                    out.error = Some(format!("docker compose exited with {code}; its output is in the log"));
                }
            }
            Err(e) => out.error = Some(e),
        }
        out
    }

    fn run_up(&self, p: &Project) -> Result<i32, String> {
        if !valid_project_name(&p.name) {
            return Err(format!(
                "{:?} is not a Compose project name: rename the directory (lower-case letters, digits, - and _)",
                p.name
            ));
        }
        let file = p.file.as_ref().ok_or_else(|| format!("no {} in {}", COMPOSE_FILES[0], p.dir.display()))?;
        let mut child = Command::new(self.program)
            .arg("compose")
            .args(["-p", &p.name])
            .arg("--project-directory")
            .arg(&p.dir)
            .arg("-f")
            .arg(file)
            .args(["up", "-d"])
            .current_dir(&p.dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.program.display()))?;
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status.code().unwrap_or(-1)),
                Ok(None) if start.elapsed() >= self.project_timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("did not finish within {} s and was stopped", self.project_timeout.as_secs()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Writes the status by rename, so a reader never sees half of it.
pub fn write_status(path: &Path, status: &Status) -> Result<(), AppsError> {
    let err = |source| AppsError::Status { path: path.into(), source };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension("json.new");
    let json = serde_json::to_string_pretty(status).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&tmp, json + "\n").map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The whole run: discover, wait for Docker (only when there is something to start), then
/// every project in turn, the status rewritten after each.
pub fn run(dir: &Path, status_file: &Path, docker: &Docker, log: &mut dyn FnMut(&str)) -> Result<Status, AppsError> {
    let projects = discover(dir)?;
    let mut status = Status::default();
    if projects.is_empty() {
        log(&format!("no apps under {}", dir.display()));
        write_status(status_file, &status)?;
        return Ok(status);
    }
    log(&format!("{} app(s) under {}; waiting for Docker", projects.len(), dir.display()));
    status.docker_ready = docker.wait_ready();
    if !status.docker_ready {
        for p in &projects {
            status.projects.push(Outcome {
                name: p.name.clone(),
                directory: p.dir.display().to_string(),
                ok: false,
                exit_code: None,
                error: Some(format!("Docker did not answer within {} s", docker.ready_timeout.as_secs())),
                seconds: 0.0,
            });
        }
        log("Docker did not answer; no app started");
        write_status(status_file, &status)?;
        return Ok(status);
    }
    for p in &projects {
        log(&format!("== {}: docker compose -p {} up -d", p.name, p.name));
        let o = docker.up(p);
        log(&match &o.error {
            None => format!("== {}: started ({:.1} s)", p.name, o.seconds),
            Some(e) => format!("== {}: FAILED: {e}", p.name),
        });
        status.projects.push(o);
        write_status(status_file, &status)?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lw-apps-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A `docker` that answers `info`, fails `up` for the project named `broken`, and
    /// records every call.
    fn fake_docker(dir: &Path, ready: bool) -> PathBuf {
        let p = dir.join("docker");
        let calls = dir.join("calls");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1\" in\n  info) exit {info} ;;\nesac\ncase \"$*\" in\n  *'-p broken'*) echo 'image not found' >&2; exit 17 ;;\nesac\nexit 0\n",
                calls = calls.display(),
                info = if ready { 0 } else { 1 }
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn app(root: &Path, name: &str, file: Option<&str>) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        if let Some(f) = file {
            std::fs::write(d.join(f), "services: {}\n").unwrap();
        }
    }

    #[test]
    fn names() {
        assert!(valid_project_name("web") && valid_project_name("app_2") && valid_project_name("9lives"));
        assert!(
            !valid_project_name("Web")
                && !valid_project_name("-x")
                && !valid_project_name("")
                && !valid_project_name("a b")
        );
    }

    #[test]
    fn a_failing_project_is_reported_and_the_others_still_start() {
        let d = scratch("fail");
        let apps = d.join("apps");
        app(&apps, "broken", Some("compose.yaml"));
        app(&apps, "web", Some("docker-compose.yml"));
        app(&apps, "Bad Name", Some("compose.yaml"));
        app(&apps, "empty", None);
        let docker = fake_docker(&d, true);
        let status_file = d.join("run/compose.json");
        let mut lines = Vec::new();
        let st = run(
            &apps,
            &status_file,
            &Docker {
                program: &docker,
                ready_timeout: Duration::from_secs(5),
                project_timeout: Duration::from_secs(5),
            },
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap();
        assert!(st.docker_ready);
        let by: Vec<(&str, bool)> = st.projects.iter().map(|o| (o.name.as_str(), o.ok)).collect();
        assert_eq!(by, [("Bad Name", false), ("broken", false), ("empty", false), ("web", true)]);
        assert_eq!(st.projects[1].exit_code, Some(17));
        assert!(st.projects[0].error.as_deref().unwrap().contains("rename the directory"));
        assert!(st.projects[2].error.as_deref().unwrap().contains("no compose.yaml"));
        let calls = std::fs::read_to_string(d.join("calls")).unwrap();
        assert!(
            calls.contains(&format!(
                "compose -p web --project-directory {0} -f {0}/docker-compose.yml up -d",
                apps.join("web").display()
            )),
            "{calls}"
        );
        let written: Status = serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
        assert_eq!(written, st);
        assert!(
            lines.iter().any(|l| l == "== broken: FAILED: docker compose exited with 17; its output is in the log"),
            "{lines:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_apps_means_no_wait_and_docker_not_answering_is_reported() {
        let d = scratch("wait");
        let docker = fake_docker(&d, false);
        let cfg =
            Docker { program: &docker, ready_timeout: Duration::from_secs(1), project_timeout: Duration::from_secs(1) };
        let st = run(&d.join("none"), &d.join("s.json"), &cfg, &mut |_| {}).unwrap();
        assert_eq!(st, Status::default());
        assert!(!d.join("calls").exists(), "nothing to start: Docker is not even asked");
        app(&d.join("apps"), "web", Some("compose.yaml"));
        let st = run(&d.join("apps"), &d.join("s.json"), &cfg, &mut |_| {}).unwrap();
        assert!(!st.docker_ready);
        assert!(st.projects[0].error.as_deref().unwrap().contains("Docker did not answer"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
