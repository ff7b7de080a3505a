//! Whether an HTTP server on a Unix socket answers yet: the supervisor's `HttpOk`
//! condition (a service that should start once Docker serves its API, not when dockerd
//! has merely created its socket).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long PID 1 waits for an answer per check. A server that has its socket but does not
/// serve yet (dockerd during its start-up) accepts the connection into its backlog and says
/// nothing; the supervisor checks again on its next tick.
pub const PATIENCE: Duration = Duration::from_millis(20);

/// Pure: whether a response starts with an HTTP status line whose code is 200.
pub fn is_ok_status(response: &[u8]) -> bool {
    let line = response.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let version = words.next().unwrap_or_default();
    version.starts_with(b"HTTP/1.") && words.next() == Some(b"200".as_slice())
}

/// Sends `GET path` over `socket` and waits at most `patience` (for each of writing and
/// reading) for a 200.
pub fn answers_ok(socket: &Path, path: &str, patience: Duration) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else { return false };
    if s.set_read_timeout(Some(patience)).is_err() || s.set_write_timeout(Some(patience)).is_err() {
        return false;
    }
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    is_ok_status(&buf[..got])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn status_lines() {
        assert!(is_ok_status(b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\n"));
        assert!(is_ok_status(b"HTTP/1.0 200 OK\n"));
        assert!(!is_ok_status(b"HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(!is_ok_status(b"HTTP/1.1 2000 x\r\n"));
        assert!(!is_ok_status(b"SSH-2.0-OpenSSH_10.0\r\n"));
        assert!(!is_ok_status(b""));
    }

    fn socket_path(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("lw-http-probe-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_server_that_answers_200_is_ok_one_that_is_silent_or_absent_is_not() {
        let p = socket_path("ok");
        let l = UnixListener::bind(&p).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 256];
            let n = c.read(&mut req).unwrap();
            assert!(req[..n].starts_with(b"GET /_ping HTTP/1.0\r\n"), "{:?}", String::from_utf8_lossy(&req[..n]));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK").unwrap();
        });
        assert!(answers_ok(&p, "/_ping", Duration::from_secs(5)));
        server.join().unwrap();

        // Listening but not serving yet (dockerd before "API listen"): no answer in time.
        let p2 = socket_path("silent");
        let _silent = UnixListener::bind(&p2).unwrap();
        let t = std::time::Instant::now();
        assert!(!answers_ok(&p2, "/_ping", PATIENCE));
        assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());

        assert!(!answers_ok(&socket_path("absent"), "/_ping", PATIENCE));
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(&p2);
    }
}
