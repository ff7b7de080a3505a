//! sysctl.d files: `key = value` lines applied through /proc/sys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Pure: (key, value) pairs in file order; comments and blank lines skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().trim_start_matches('-').to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

pub fn proc_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Files from `dirs` by file name, later directories overriding same-named files of
/// earlier ones (so /etc/sysctl.d/x.conf replaces /usr/lib/sysctl.d/x.conf).
pub fn files(dirs: &[&Path]) -> Vec<PathBuf> {
    let mut by_name = BTreeMap::new();
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") {
                    by_name.insert(name, e.path());
                }
            }
        }
    }
    by_name.into_values().collect()
}

pub fn apply_all() -> usize {
    let mut n = 0;
    for f in files(&[Path::new("/usr/lib/sysctl.d"), Path::new("/etc/sysctl.d")]) {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for (k, v) in parse(&text) {
            match std::fs::write(proc_path(&k), format!("{v}\n")) {
                Ok(()) => n += 1,
                Err(e) => log::warn!("sysctl {k} = {v} (from {}): {e}", f.display()),
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_values_and_comments() {
        let p = parse("# c\n; c\n\nkernel.kptr_restrict = 1\nnet.ipv4.ip_forward=1\n-fs.x = a b\nbogus\n");
        assert_eq!(
            p,
            vec![
                ("kernel.kptr_restrict".to_string(), "1".to_string()),
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
                ("fs.x".to_string(), "a b".to_string())
            ]
        );
        assert_eq!(proc_path("net.ipv4.ip_forward"), PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
    }
}
