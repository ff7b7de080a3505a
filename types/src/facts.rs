//! Facts the init writes to /run/lightwhale for `lightwhale status` (and the tests) to
//! read: one JSON file per topic, replaced atomically, readable by every user. The types
//! are shared with the reader (tools/), so writer and reader cannot disagree.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

pub use crate::constants::{
    BOOT_FACTS as BOOT, NOCLOUD_FACTS as NOCLOUD, PERSISTENCE_FACTS as PERSISTENCE, RUN_DIR as DIR,
    SERVICES_FACTS as SERVICES,
};

/// `ServiceFact::state` of a service whose process runs (the one state that has an uptime,
/// and the one in which it can answer).
pub const SERVICE_RUNNING: &str = "running";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceFact {
    pub name: String,
    /// disabled, waiting, starting, running ([`SERVICE_RUNNING`]), restarting, stopping or
    /// stopped.
    pub state: String,
    pub pid: Option<i32>,
    /// How often it was started again after its first start.
    pub restarts: u32,
    /// Seconds since boot when it last started (its uptime is the boot's minus this).
    pub started_at_s: Option<f64>,
    /// How its last process ended (`killed by SIGKILL`, `exit code 1`).
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootStep {
    /// The console marker (`persistence ready`, `squashfs mounted`, ...).
    pub name: String,
    pub detail: String,
    /// Seconds since the kernel started, when the step ended.
    pub uptime_s: f64,
    pub took_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Boot {
    pub steps: Vec<BootStep>,
    /// When the services started (seconds since the kernel started).
    pub finished_s: Option<f64>,
}

/// What persistence ended up as on this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Persistence {
    /// A persistence disk is mounted at /mnt/lightwhale-data.
    Device { device: String, claimed: bool, uuid: String },
    /// RAM only, by choice or because there is no persistence disk.
    Tmpfs { reason: String },
    /// A persistence disk exists but could not be used: RAM only, and nothing was written
    /// to the disk.
    Failed { device: String, error: String },
}

/// Writes `value` to `path` as JSON, atomically (a reader never sees half a file).
pub fn write<T: Serialize>(path: &str, value: &T) -> std::io::Result<()> {
    let path = Path::new(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// Reads a fact; None when it is missing or unreadable.
pub fn read<T: DeserializeOwned>(path: &str) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_json_names_its_mode() {
        let p = Persistence::Tmpfs { reason: "no persistence device".into() };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"{"mode":"tmpfs","reason":"no persistence device"}"#);
        let d: Persistence =
            serde_json::from_str(r#"{"mode":"device","device":"sda1","claimed":false,"uuid":"u"}"#).unwrap();
        assert_eq!(d, Persistence::Device { device: "sda1".into(), claimed: false, uuid: "u".into() });
    }

    #[test]
    fn write_then_read() {
        let dir = std::env::temp_dir().join(format!("lw-facts-{}", std::process::id()));
        let path = dir.join("boot.json");
        let boot = Boot {
            steps: vec![BootStep { name: "a".into(), detail: "b".into(), uptime_s: 1.5, took_s: 0.25 }],
            finished_s: Some(2.0),
        };
        write(path.to_str().unwrap(), &boot).unwrap();
        assert_eq!(read::<Boot>(path.to_str().unwrap()), Some(boot));
        assert!(!dir.join("boot.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
