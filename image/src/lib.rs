//! Lightwhale's image assembler, shared by both build paths: `cargo xtask iso` calls it as a
//! library after mmdebstrap has made the root tree; the flake runs `lightwhale-mkimage` in
//! its derivations with tools from nixpkgs. One image format, produced by both.
//!
//! Artefacts: `squashfs` (rootfs.squashfs, and rootfs.img with its hashes), `initramfs`
//! (the deterministic `cpio` writer), `iso` (hybrid, ISOLINUX and GRUB). Root-tree steps
//! both paths share: `manifest` (modules/*/module.toml), `install`, `users`, `kmods`, `firmware`,
//! `tree`;
//! and the Nix path's own: `nixroot`.

pub mod cmd;
pub mod cpio;
pub mod error;
pub mod firmware;
pub mod initramfs;
pub mod install;
pub mod iso;
pub mod kmods;
pub mod manifest;
pub mod nixroot;
pub mod progress;
pub mod squashfs;
pub mod tree;
pub mod users;

pub use error::{Error, IoContext, Result};

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    lightwhale_types::image::sha256_hex(&mut std::fs::File::open(path)?)
}

/// Whether this process runs as root (then it sets owners itself; a Nix builder cannot,
/// and the squashfs step makes everything root's instead).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
