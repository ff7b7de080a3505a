//! What to mount where, computed from the filesystems config. Pure: the mounts module
//! carries the plan out.

use crate::config::Filesystems;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    Tmpfs { target: PathBuf },
    Overlay { target: PathBuf, upper: PathBuf, work: PathBuf },
}

/// `/var/www` -> `<base>/var/www/{upper,work}`.
fn overlay_step(base: &Path, dir: &str) -> MountStep {
    let rel = dir.trim_start_matches('/');
    MountStep::Overlay {
        target: PathBuf::from(dir),
        upper: base.join(rel).join("upper"),
        work: base.join(rel).join("work"),
    }
}

fn depth_sorted(dirs: &[String]) -> Vec<&String> {
    let mut v: Vec<&String> = dirs.iter().collect();
    // Parents before children, so /var/www lands on top of /var.
    v.sort_by_key(|d| (d.matches('/').count(), d.as_str()));
    v.dedup();
    v
}

/// RAM-backed mounts, done before persistence: `tmpfs` dirs and `volatile` overlays whose
/// upper layers live under `ram_base`.
pub fn volatile(fs: &Filesystems, ram_base: &Path) -> Vec<MountStep> {
    let mut steps: Vec<MountStep> =
        depth_sorted(&fs.tmpfs).into_iter().map(|d| MountStep::Tmpfs { target: d.into() }).collect();
    steps.extend(depth_sorted(&fs.volatile).into_iter().map(|d| overlay_step(ram_base, d)));
    steps
}

/// Overlays of the persisted dirs, uppers under `<data_root>/overlay/`.
pub fn persisted(fs: &Filesystems, data_root: &Path) -> Vec<MountStep> {
    let base = data_root.join("overlay");
    depth_sorted(&fs.persisted).into_iter().map(|d| overlay_step(&base, d)).collect()
}

/// Docker's data-root (set in the image's /etc/docker/daemon.json). Not an overlay:
/// Docker's overlay2 refuses an upper directory that is itself on overlayfs.
pub fn docker_root(data_root: &Path) -> PathBuf {
    data_root.join("docker")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> Filesystems {
        Filesystems {
            persisted: vec!["/var/www".into(), "/etc".into(), "/home".into()],
            volatile: vec!["/var".into()],
            tmpfs: vec!["/tmp".into()],
        }
    }

    #[test]
    fn persisted_overlays_follow_the_documented_layout() {
        let steps = persisted(&fs(), Path::new("/mnt/lightwhale-data"));
        assert_eq!(
            steps[0],
            MountStep::Overlay {
                target: "/etc".into(),
                upper: "/mnt/lightwhale-data/overlay/etc/upper".into(),
                work: "/mnt/lightwhale-data/overlay/etc/work".into()
            }
        );
        let targets: Vec<_> = steps
            .iter()
            .map(|s| match s {
                MountStep::Overlay { target, .. } => target.clone(),
                MountStep::Tmpfs { target } => target.clone(),
            })
            .collect();
        assert_eq!(targets, vec![PathBuf::from("/etc"), "/home".into(), "/var/www".into()]);
    }

    #[test]
    fn volatile_tmpfs_first_then_overlays_in_ram() {
        let steps = volatile(&fs(), Path::new("/run/lightwhale/volatile"));
        assert_eq!(steps[0], MountStep::Tmpfs { target: "/tmp".into() });
        assert_eq!(
            steps[1],
            MountStep::Overlay {
                target: "/var".into(),
                upper: "/run/lightwhale/volatile/var/upper".into(),
                work: "/run/lightwhale/volatile/var/work".into()
            }
        );
    }
}
