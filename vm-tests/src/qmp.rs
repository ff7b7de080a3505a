//! Minimal QMP client: enough for the power button and clean quits.

use crate::VmError;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub fn command(socket: &Path, execute: &str) -> Result<serde_json::Value, VmError> {
    let err = |e: std::io::Error| VmError::Setup(format!("QMP {}: {e}", socket.display()));
    let stream = UnixStream::connect(socket).map_err(err)?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(err)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(err)?);
    let mut w = stream;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(err)?; // greeting
    for cmd in ["qmp_capabilities", execute] {
        writeln!(w, "{}", serde_json::json!({ "execute": cmd })).map_err(err)?;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(err)? == 0 {
                return Err(VmError::Setup("QMP closed the connection".into()));
            }
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| VmError::Setup(format!("QMP: {e}")))?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(VmError::Setup(format!("QMP {cmd}: {e}")));
            }
            if cmd == execute {
                return Ok(v["return"].clone());
            }
            break;
        }
    }
    Ok(serde_json::Value::Null)
}
