//! A cloud-init NoCloud seed as Lightwhale reads it: `meta-data`, `user-data`
//! (#cloud-config) and optionally `network-config`, from a directory.
//!
//! `schema` is the documented shape of the files, `parse` reads a seed into `Parsed`,
//! `network` turns network-config into dhcpcd's settings, and `plan` decides, against the
//! machine's accounts and writable directories, what a seed would change (`Plan`): all pure.
//! `apply` carries a plan out on a root directory. The init mounts the seed and applies it
//! at boot; `lightwhale seed check` shows the plan without writing anything.

pub mod apply;
pub mod network;
pub mod parse;
pub mod plan;
pub mod schema;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The distribution's default user, cloud-init's `default` and the owner of top-level
/// `ssh_authorized_keys` and `password`.
pub const DEFAULT_USER: &str = "op";
/// The instance-id applied last, in the persisted /etc: a seed is applied once per
/// instance-id (on RAM-only boots /etc starts empty, so at every boot).
pub const MARKER: &str = "/etc/lightwhale/nocloud/instance-id";

/// Something in the seed that Lightwhale will not do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub what: String,
    pub why: String,
}

impl Refused {
    pub fn new(what: &str, why: &str) -> Refused {
        Refused { what: what.into(), why: why.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedInfo {
    pub device: String,
    pub filesystem: String,
}

/// The facts of this boot's provisioning, written to STATUS_FILE as JSON:
/// `{"seed": {"device": "sr1", "filesystem": "iso9660"} | null, "instance_id": "..." | null,
///   "applied": bool, "skipped": "why not applied" | null, "done": ["hostname web1", ...],
///   "unknown_keys": ["user-data: runcmd", ...], "refused": [{"what": ..., "why": ...}],
///   "errors": ["user-data line 3 column 1: ...", ...]}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub seed: Option<SeedInfo>,
    pub instance_id: Option<String>,
    pub applied: bool,
    pub skipped: Option<String>,
    pub done: Vec<String>,
    pub unknown_keys: Vec<String>,
    pub refused: Vec<Refused>,
    pub errors: Vec<String>,
}

/// Pure: apply unless the persisted marker names this very instance.
pub fn should_apply(marker: Option<&str>, instance_id: &str) -> bool {
    marker.map(str::trim) != Some(instance_id)
}

/// The most a seed parser's answer may hold: what it read (at most the documented limits
/// of meta-data, user-data and network-config) four times over, room for base64'd file
/// contents (4/3), RON's escapes and the crypt hashes that replace plain passwords.
pub const SEED_ANSWER_LIMIT: usize = 4 * (parse::MAX_USER_DATA + 2 * parse::SMALL_FILE);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub instance_id: String,
    pub done: Vec<String>,
    pub unknown_keys: Vec<String>,
    pub refused: Vec<Refused>,
    pub errors: Vec<String>,
}

/// Reads the seed in `dir` with the boot's own parser and plans it against `env` as the
/// boot would, writing nothing (`lightwhale seed check`).
pub fn check(dir: &Path, env: &plan::Env) -> Check {
    let parsed = parse::read_seed(dir, &mut parse::random_salt);
    let plan = plan::plan(&parsed, env);
    let mut refused = parsed.refused.clone();
    refused.extend(plan.refused);
    let mut errors = parsed.errors.clone();
    errors.extend(plan.errors);
    Check { instance_id: parsed.instance_id, done: plan.done, unknown_keys: parsed.unknown_keys, refused, errors }
}

/// The network interfaces with a MAC address, for network-config's `match:`.
pub fn nics(sys_class_net: &Path) -> Vec<network::Nic> {
    let mut v: Vec<network::Nic> = std::fs::read_dir(sys_class_net)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let mac = std::fs::read_to_string(e.path().join("address")).ok()?.trim().to_ascii_lowercase();
                    (name != "lo" && !mac.is_empty()).then_some(network::Nic { name, mac })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}
