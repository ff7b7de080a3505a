//! `lightwhale logs [SERVICE] [--previous]`: a service's output, or the init's own log
//! (the boot, services starting and stopping, shutdown), of this boot or the one before.

use lightwhale_types::logs::{self, INIT_LOG, LOG_DIR, PREVIOUS_DIR};
use std::path::{Path, PathBuf};

/// Pure: the names of the logs in a directory listing (`dockerd.log`, `dockerd.log.1`
/// and `init.log` give `dockerd`, `init`), sorted.
pub fn names(files: &[String]) -> Vec<String> {
    let mut v: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_suffix(".log").or_else(|| f.strip_suffix(".log.1")))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The log's text, the rotated part first.
pub fn read(service: Option<&str>, previous: bool) -> Result<String, String> {
    let dir = PathBuf::from(if previous { PREVIOUS_DIR } else { LOG_DIR });
    if previous && !logs::path(&dir, INIT_LOG).exists() {
        return Err(format!(
            "no logs of a previous boot in {PREVIOUS_DIR}: they are kept only with a persistence disk (and from the boot after the one that claimed it)"
        ));
    }
    let name = service.unwrap_or(INIT_LOG);
    let current = logs::path(&dir, name);
    let mut rotated = current.clone().into_os_string();
    rotated.push(".1");
    let mut text = String::new();
    let mut found = false;
    for p in [PathBuf::from(rotated), current] {
        match std::fs::read(&p) {
            Ok(bytes) => {
                found = true;
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let mut cmd = String::from("sudo lightwhale logs");
                if let Some(s) = service {
                    cmd.push(' ');
                    cmd.push_str(s);
                }
                if previous {
                    cmd.push_str(" --previous");
                }
                return Err(format!("logs are readable by root only: run `{cmd}`"));
            }
            Err(_) => {}
        }
    }
    if !found {
        return Err(format!(
            "no log named {name:?} in {}; there are: {}",
            dir.display(),
            names(&listing(&dir)).join(" ")
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_from_files() {
        let files: Vec<String> =
            ["dockerd.log", "dockerd.log.1", "init.log", "previous", "sshd.log"].map(String::from).to_vec();
        assert_eq!(names(&files), vec!["dockerd", "init", "sshd"]);
    }
}
