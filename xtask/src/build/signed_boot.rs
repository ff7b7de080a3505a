//! Debian's Secure Boot chain for the ISO's UEFI loader: shim, MokManager and the signed
//! removable-media GRUB, taken out of their .debs (extracted, never installed into the
//! image). apt picks the versions from the package lists the rootfs stage cached, and the
//! .debs share its package cache, so these files are pinned like every other package and
//! two builds give the same ISO. Only `cargo xtask iso --refresh` moves them forward.

use super::Ctx;
use crate::error::{Error, IoContext, Result};
use lightwhale_image::cmd;
use lightwhale_image::iso::SignedLoader;
use lightwhale_image::progress::Step;
use std::path::{Path, PathBuf};
use std::process::Command;

const STEP: &str = "secure boot";

/// (package, the file the ISO takes from it)
pub const FILES: [(&str, &str); 3] = [
    ("shim-signed", "usr/lib/shim/shimx64.efi.signed"),
    ("shim-helpers-amd64-signed", "usr/lib/shim/mmx64.efi.signed"),
    ("grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed"),
];

/// One line of `apt-get download --print-uris`.
#[derive(Debug, PartialEq, Eq)]
pub struct Uri {
    pub url: String,
    pub file: String,
    pub sha256: String,
}

/// Pure: `'URL' FILE SIZE SHA256:HEX` lines; anything else is skipped.
pub fn parse_print_uris(text: &str) -> Vec<Uri> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let url = f.next()?.strip_prefix('\'')?.strip_suffix('\'')?.to_string();
            let file = f.next()?.to_string();
            let _size = f.next()?;
            let sha256 = f.next()?.strip_prefix("SHA256:")?.to_ascii_lowercase();
            Some(Uri { url, file, sha256 })
        })
        .collect()
}

/// Pure: an apt configuration that reads only the cached package lists (no system state,
/// no host sources or pins) and never updates them.
pub fn apt_conf(state: &Path, lists: &Path) -> String {
    let s = state.display();
    format!(
        "Dir::State \"{s}/state\";\nDir::State::Lists \"{}\";\nDir::State::status \"{s}/status\";\n\
         Dir::Cache \"{s}/cache\";\nDir::Etc::SourceList \"{s}/sources.list\";\nDir::Etc::SourceParts \"{s}/empty\";\n\
         Dir::Etc::Preferences \"{s}/empty/preferences\";\nDir::Etc::PreferencesParts \"{s}/empty\";\n\
         APT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; }};\nAPT::Sandbox::User \"root\";\n\
         Acquire::Retries \"3\";\n",
        lists.display()
    )
}

fn apt(conf: &Path) -> Command {
    let mut c = Command::new("apt-get");
    c.env("APT_CONFIG", conf).arg("--quiet");
    c
}

/// The signed loader files, extracted under `out/build/signed-boot/`; apt resolves them in
/// `lists`, the package lists the rootfs stage fetched (`super::package_lists`).
pub fn fetch(ctx: &Ctx, lists: &Path) -> Result<SignedLoader> {
    let step = Step::start("secure boot: Debian's signed shim, MokManager and GRUB");
    if !lists.join(".complete").exists() {
        return Err(Error::Step {
            step: STEP,
            message: format!(
                "no cached package lists in {}: run `cargo xtask iso --force`, whose rootfs stage fetches them",
                lists.display()
            ),
        });
    }
    let state = ctx.build.join("apt");
    let _ = std::fs::remove_dir_all(&state);
    for d in ["state", "cache", "empty"] {
        std::fs::create_dir_all(state.join(d)).ctx(STEP, &state)?;
    }
    std::fs::write(state.join("status"), "").ctx(STEP, &state)?;
    std::fs::write(state.join("sources.list"), format!("deb {} {} main\n", ctx.mirror, ctx.suite)).ctx(STEP, &state)?;
    let conf = state.join("apt.conf");
    std::fs::write(&conf, apt_conf(&state, lists)).ctx(STEP, &conf)?;

    let packages: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
    let uris = parse_print_uris(&cmd::output(STEP, apt(&conf).args(["download", "--print-uris"]).args(&packages))?);
    if uris.len() != packages.len() {
        return Err(Error::Step {
            step: STEP,
            message: format!(
                "the package lists in {} do not offer all of {}: run `cargo xtask iso --refresh`",
                lists.display(),
                packages.join(", ")
            ),
        });
    }
    let debs = ctx.cache.debs();
    std::fs::create_dir_all(&debs).ctx(STEP, &debs)?;
    let cached = |u: &Uri| lightwhale_image::sha256_file(&debs.join(&u.file)).is_ok_and(|h| h == u.sha256);
    let missing: Vec<&Uri> = uris.iter().filter(|u| !cached(u)).collect();
    if !missing.is_empty() {
        cmd::run(
            STEP,
            apt(&conf).current_dir(&debs).arg("download").args(&packages),
            &format!("Downloading from {} failed: check the network (or LIGHTWHALE_MIRROR).", ctx.mirror),
        )?;
        if let Some(bad) = uris.iter().find(|u| !cached(u)) {
            return Err(Error::Step {
                step: STEP,
                message: format!(
                    "{} does not match its SHA-256 in the package lists: delete it and build again",
                    bad.file
                ),
            });
        }
    }

    let out = ctx.build.join("signed-boot");
    let _ = std::fs::remove_dir_all(&out);
    let mut files = Vec::new();
    for (pkg, path) in FILES {
        // apt lists the packages in its own order; a .deb's name starts with its package's.
        let u = uris.iter().find(|u| u.file.starts_with(&format!("{pkg}_"))).ok_or_else(|| Error::Step {
            step: STEP,
            message: format!("apt offered no .deb for {pkg}: run `cargo xtask iso --refresh`"),
        })?;
        let dir = out.join(pkg);
        std::fs::create_dir_all(&dir).ctx(STEP, &dir)?;
        cmd::output(STEP, Command::new("dpkg-deb").arg("-x").arg(debs.join(&u.file)).arg(&dir))?;
        let file: PathBuf = dir.join(path);
        if !file.is_file() {
            return Err(Error::Step {
                step: STEP,
                message: format!("{} has no {path}: the package changed its layout; update {}", u.file, file!()),
            });
        }
        files.push(file);
    }
    let names: Vec<&str> = uris.iter().map(|u| u.file.as_str()).collect();
    step.done(&format!("{} (downloaded {})", names.join(", "), missing.len()));
    let [shim, mok_manager, grub] = <[PathBuf; 3]>::try_from(files).expect("three files");
    Ok(SignedLoader { shim, grub, mok_manager })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_uris_lines_are_parsed() {
        let text = "'http://deb.debian.org/debian/pool/main/s/shim-signed/shim-signed_1.51~1%2bdeb13u1_amd64.deb' shim-signed_1.51~1+deb13u1_amd64.deb 346976 SHA256:3C802FA3\nW: something\n";
        assert_eq!(
            parse_print_uris(text),
            vec![Uri {
                url: "http://deb.debian.org/debian/pool/main/s/shim-signed/shim-signed_1.51~1%2bdeb13u1_amd64.deb"
                    .into(),
                file: "shim-signed_1.51~1+deb13u1_amd64.deb".into(),
                sha256: "3c802fa3".into(),
            }]
        );
    }

    #[test]
    fn apt_reads_only_the_cached_lists() {
        let c = apt_conf(Path::new("/b/apt"), Path::new("/c/lists-trixie"));
        assert!(c.contains("Dir::State::Lists \"/c/lists-trixie\";"), "{c}");
        assert!(c.contains("Dir::State::status \"/b/apt/status\";"), "{c}");
        assert!(c.contains("Dir::Etc::SourceParts \"/b/apt/empty\";"), "{c}");
        assert!(c.contains("Dir::Etc::PreferencesParts \"/b/apt/empty\";"), "{c}");
    }
}
