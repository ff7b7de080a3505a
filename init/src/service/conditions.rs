//! The conditions a service waits for before it starts (`wait_for` in `init.ron`): the
//! network online, a path, an HTTP answer on a Unix socket. A condition not met within its
//! timeout is logged and the service starts anyway.

use crate::config::{Condition, Service};
use crate::machine::net;
use crate::service::http_probe;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether every condition of `svc` is met (or has waited out its timeout since `since`).
pub fn conditions_met(svc: &Service, since: Instant) -> bool {
    let waited = since.elapsed();
    svc.wait_for.iter().all(|c| {
        let met = match c {
            Condition::NetworkOnline { .. } => net::network_online(),
            Condition::PathExists { path, .. } => Path::new(path).exists(),
            Condition::HttpOk { socket, path, .. } => {
                http_probe::answers_ok(Path::new(socket), path, http_probe::PATIENCE)
            }
        };
        if !met && waited >= Duration::from_secs(c.timeout_secs()) {
            log::warn!("service {}: {c:?} not met after {} s; starting anyway", svc.name, c.timeout_secs());
            return true;
        }
        met
    })
}
