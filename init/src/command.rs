//! Running the image's own tools (mke2fs, e2fsck, ssh-keygen) with their output captured,
//! so a failure can be reported in one message.

use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("starting {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} exited with {status}: {output}")]
    Failed { program: String, status: String, code: Option<i32>, output: String },
}

impl CommandError {
    pub fn code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { code, .. } => *code,
            CommandError::Spawn { .. } => None,
        }
    }
}

/// Runs `program args...`; succeeds on exit codes in `ok_codes`. Returns combined output.
pub fn run_ok(program: &Path, args: &[&str], ok_codes: &[i32]) -> Result<String, CommandError> {
    let name = program.display().to_string();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn { program: name.clone(), source })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let text = text.trim().to_string();
    match out.status.code() {
        Some(c) if ok_codes.contains(&c) => Ok(text),
        code => Err(CommandError::Failed { program: name, status: out.status.to_string(), code, output: text }),
    }
}

pub fn run(program: &Path, args: &[&str]) -> Result<String, CommandError> {
    run_ok(program, args, &[0])
}
