//! A private layer-2 segment between machines, without root and without a host bridge: each
//! machine's second NIC is a QEMU `-netdev dgram` whose frames go, as Unix datagrams, to a
//! hub thread here, which passes every frame on to all the other machines (a hub, not a
//! switch: few machines, little traffic). Frames from machines not yet started are dropped
//! as on a cable nobody has plugged in.

use crate::VmError;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One machine's plug into the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Where QEMU receives frames (its `local` address).
    pub machine_socket: PathBuf,
    /// Where QEMU sends frames (the hub's socket for this port).
    pub hub_socket: PathBuf,
    /// Every NIC on the segment needs its own MAC address.
    pub mac: String,
}

impl Port {
    /// The QEMU arguments for this NIC (virtio, `id` names it).
    pub fn qemu_args(&self, id: &str) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!(
                "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                self.machine_socket.display(),
                self.hub_socket.display()
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev={id},mac={}", self.mac),
        ]
    }
}

/// The hub; it stops when dropped.
pub struct Segment {
    pub ports: Vec<Port>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Pure: a locally administered MAC address for port `i` of a segment.
pub fn mac(i: usize) -> String {
    format!("52:54:00:4c:57:{:02x}", i + 1)
}

impl Segment {
    /// A segment with `n` ports, its sockets in `dir` (kept short: Unix socket paths are
    /// limited to 107 bytes).
    pub fn new(dir: &Path, n: usize) -> Result<Segment, VmError> {
        std::fs::create_dir_all(dir).map_err(|e| VmError::Setup(format!("{}: {e}", dir.display())))?;
        let mut hubs = Vec::new();
        let mut ports = Vec::new();
        for i in 0..n {
            let port = Port {
                machine_socket: dir.join(format!("m{i}.sock")),
                hub_socket: dir.join(format!("h{i}.sock")),
                mac: mac(i),
            };
            for p in [&port.machine_socket, &port.hub_socket] {
                let _ = std::fs::remove_file(p);
                if p.as_os_str().len() > 100 {
                    return Err(VmError::Setup(format!("{}: too long for a Unix socket", p.display())));
                }
            }
            let sock = UnixDatagram::bind(&port.hub_socket)
                .map_err(|e| VmError::Setup(format!("binding {}: {e}", port.hub_socket.display())))?;
            sock.set_nonblocking(true).map_err(|e| VmError::Setup(e.to_string()))?;
            hubs.push(sock);
            ports.push(port);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let targets: Vec<PathBuf> = ports.iter().map(|p| p.machine_socket.clone()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || forward(hubs, targets, flag));
        Ok(Segment { ports, stop, thread: Some(thread) })
    }
}

/// Passes each frame that arrives on one port to every other port.
fn forward(hubs: Vec<UnixDatagram>, targets: Vec<PathBuf>, stop: Arc<AtomicBool>) {
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 65_536];
    let mut fds: Vec<libc::pollfd> =
        hubs.iter().map(|h| libc::pollfd { fd: h.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: fds is a valid array of pollfd for the sockets `hubs` keeps open.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) } <= 0 {
            continue;
        }
        for (i, hub) in hubs.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            while let Ok(n) = hub.recv(&mut buf) {
                for (j, target) in targets.iter().enumerate() {
                    if j != i {
                        // A machine that is not running yet (or any more) just misses it.
                        let _ = hub.send_to(&buf[..n], target);
                    }
                }
            }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for p in &self.ports {
            let _ = std::fs::remove_file(&p.hub_socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[test]
    fn every_frame_reaches_every_other_port() {
        let dir = std::env::temp_dir().join(format!("lw-seg-{}", std::process::id()));
        let seg = Segment::new(&dir, 3).unwrap();
        let machines: Vec<UnixDatagram> = seg
            .ports
            .iter()
            .map(|p| {
                let s = UnixDatagram::bind(&p.machine_socket).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s
            })
            .collect();
        machines[0].send_to(b"frame from 0", &seg.ports[0].hub_socket).unwrap();
        let mut buf = [0u8; 64];
        for m in &machines[1..] {
            let n = m.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"frame from 0");
        }
        machines[0].set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        assert!(machines[0].recv(&mut buf).is_err(), "a frame came back to its sender");
        assert_ne!(seg.ports[0].mac, seg.ports[1].mac);
        let args = seg.ports[1].qemu_args("seg").join(" ");
        assert!(args.contains("dgram,id=seg,local.type=unix") && args.contains("mac=52:54:00:4c:57:02"), "{args}");
        drop(seg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
