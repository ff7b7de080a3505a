//! One error type for the assembler; every variant says which step failed and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step}: {path}: {source}")]
    Io { step: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{step}: cannot run `{program}`: {source}. Install it (on Debian or Ubuntu: `cargo xtask deps`)")]
    Spawn { step: &'static str, program: String, source: std::io::Error },
    #[error("{step}: `{command}` failed ({status}). {hint}")]
    Command { step: &'static str, command: String, status: String, hint: String },
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds the step and path to an io::Error.
pub trait IoContext<T> {
    fn ctx(self, step: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, step: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { step, path: path.into(), source })
    }
}
