//! Staleness stamps for the build stages, and the assembler's helpers the commands share.

pub use lightwhale_image::cmd::{run, which};
pub use lightwhale_image::progress::Step;
pub use lightwhale_image::{hex, sha256_file};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Hash of a directory tree's paths, modes and contents (for staleness stamps).
pub fn hash_tree(root: &Path, h: &mut Sha256) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for p in lightwhale_image::tree::walk(root)? {
        let meta = std::fs::symlink_metadata(&p)?;
        h.update(p.strip_prefix(root).unwrap_or(&p).as_os_str().as_encoded_bytes());
        h.update(meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            h.update(std::fs::read(&p)?);
        } else if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(&p)?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(())
}

/// A stamp file holding the key of the inputs a step last ran with.
pub struct Stamp {
    path: PathBuf,
    key: String,
}

impl Stamp {
    pub fn new(path: PathBuf, key: String) -> Stamp {
        Stamp { path, key }
    }
    pub fn fresh(&self) -> bool {
        std::fs::read_to_string(&self.path).map(|s| s.trim() == self.key).unwrap_or(false)
    }
    pub fn write(&self) -> std::io::Result<()> {
        std::fs::write(&self.path, format!("{}\n", self.key))
    }
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
