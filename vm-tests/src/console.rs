//! Everything the guest prints on its serial console, kept in memory (searchable from a
//! cursor) and mirrored to a log file for post-mortems.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Inner {
    bytes: Vec<u8>,
    /// (end offset of a chunk, when it arrived): for timing console markers.
    arrivals: Vec<(usize, Instant)>,
    closed: bool,
}

#[derive(Clone, Default)]
pub struct Console {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl Console {
    /// Starts a thread copying `reader` into the buffer and `log`.
    pub fn attach(&self, mut reader: impl Read + Send + 'static, mut log: std::fs::File) {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log.write_all(&buf[..n]);
                        let (m, cv) = &*me.inner;
                        let mut g = m.lock().unwrap();
                        g.bytes.extend_from_slice(&buf[..n]);
                        let end = g.bytes.len();
                        g.arrivals.push((end, Instant::now()));
                        drop(g);
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*me.inner;
            m.lock().unwrap().closed = true;
            cv.notify_all();
        });
    }

    /// Current end of the buffer: later waits can start here.
    pub fn mark(&self) -> usize {
        self.inner.0.lock().unwrap().bytes.len()
    }

    /// When the byte at `offset` arrived from QEMU.
    pub fn arrival(&self, offset: usize) -> Option<Instant> {
        let g = self.inner.0.lock().unwrap();
        let i = g.arrivals.partition_point(|(end, _)| *end <= offset);
        g.arrivals.get(i).map(|(_, t)| *t)
    }

    pub fn text_since(&self, from: usize) -> String {
        let g = self.inner.0.lock().unwrap();
        String::from_utf8_lossy(&g.bytes[from.min(g.bytes.len())..]).into_owned()
    }

    pub fn tail(&self, lines: usize) -> String {
        let g = self.inner.0.lock().unwrap();
        let text = String::from_utf8_lossy(&g.bytes);
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `check` finds something in the bytes after `from`; `check` returns
    /// what it found and how many bytes it consumed. None on timeout or when the machine
    /// is gone. Offsets are raw bytes: firmware output is not always UTF-8.
    pub fn wait<T>(
        &self,
        from: usize,
        timeout: Duration,
        mut check: impl FnMut(&[u8]) -> Option<(T, usize)>,
    ) -> Option<(T, usize)> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut g = m.lock().unwrap();
        loop {
            let start = from.min(g.bytes.len());
            if let Some((v, end)) = check(&g.bytes[start..]) {
                return Some((v, start + end));
            }
            if g.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            g = cv.wait_timeout(g, left.min(Duration::from_millis(500))).unwrap().0;
        }
    }

    pub fn closed(&self) -> bool {
        self.inner.0.lock().unwrap().closed
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn find_bytes() {
        assert_eq!(super::find(b"ab\xffcd login: x", b"login: "), Some(6));
        assert_eq!(super::find(b"abc", b"x"), None);
    }
}
