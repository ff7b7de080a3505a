//! One error type for the commands; every variant says which step failed and what to do.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{step}: cannot run `{program}`: {source}. Run `cargo xtask deps` to install the build tools")]
    Spawn { step: &'static str, program: String, source: std::io::Error },
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
    #[error(transparent)]
    Image(#[from] lightwhale_image::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `.ctx(step, path)` on io results, from the assembler: its errors convert into ours.
pub use lightwhale_image::IoContext;
