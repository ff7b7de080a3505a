//! The Nix path's root tree: the closure of the modules' `[nix]` packages copied to
//! /nix/store, the FHS paths programs and the init configs expect (/usr/bin, /usr/sbin,
//! /bin, /sbin, /lib/modules/<release>, the modules' `links`), the modules' files, the
//! accounts (`users`, the same code as on Debian), PAM configs naming pam_unix by store
//! path, and setuid copies of what must be setuid (the store cannot hold setuid files).
//!
//! The tree is built without root, so owners and special modes travel as mksquashfs
//! pseudo definitions (`build` returns them) and the squashfs is made with `-all-root`.

use crate::error::{Error, IoContext, Result};
use crate::install::{self, BuildPath};
use crate::manifest::{self, Module};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STEP: &str = "nix root";

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("nixroot.rs");

/// Everything the Nix root tree is made from (store paths come from the flake).
pub struct NixRoot<'a> {
    /// closureInfo's `store-paths`: every store path the image needs.
    pub store_paths: &'a Path,
    /// The buildEnv of the modules' packages; its bin/ becomes /usr/bin.
    pub env: &'a Path,
    /// Image path (relative to /) -> store path, from the modules' `[nix] links`.
    pub links: &'a BTreeMap<String, PathBuf>,
    /// The kernel's `lib/modules` directory and the release below it.
    pub kernel_modules: &'a Path,
    pub release: &'a str,
    /// linux-pam's output (its lib/security holds pam_unix.so).
    pub pam: &'a Path,
    /// lib/firmware directories of the modules' `[nix] firmware` packages: the firmware
    /// the kept drivers ask for is copied from them (not the whole closure).
    pub firmware: &'a [PathBuf],
    /// Image path -> store file to copy there and make setuid root (sudo).
    pub setuid: &'a BTreeMap<String, PathBuf>,
    pub modules: &'a [Module],
    pub version: &'a str,
    pub build_id: &'a str,
    /// The nixpkgs revision, for the release file.
    pub nixpkgs: &'a str,
    pub epoch: u64,
    pub tree: &'a Path,
}

/// Directories every Lightwhale root has, and the merged-/usr links (as on Debian, where
/// /bin, /sbin and /lib point into /usr; nixpkgs puts every program in bin/, so /usr/sbin
/// is /usr/bin too).
const DIRS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "etc",
    "home",
    "root",
    "mnt",
    "opt",
    "srv",
    "usr/bin",
    "usr/lib",
    "usr/share",
    "usr/local/bin",
    "var/lib",
    "var/log",
    "var/cache",
    "var/tmp",
    // sshd's privilege separation directory in nixpkgs' OpenSSH (Debian's uses /run/sshd).
    "var/empty",
];
const LINKS: &[(&str, &str)] = &[("bin", "usr/bin"), ("sbin", "usr/bin"), ("lib", "usr/lib"), ("usr/sbin", "bin")];

/// Pure: the /usr/bin links for the programs in the environment's bin/.
pub fn program_links(env: &Path, programs: &[String]) -> Vec<(String, PathBuf)> {
    programs.iter().map(|p| (format!("usr/bin/{p}"), env.join("bin").join(p))).collect()
}

/// Pure: the PAM services the image uses (console login, sshd, sudo, passwd), each with
/// pam_unix by store path, and `other` denying everything else.
pub fn pam_services(pam: &Path) -> Vec<(&'static str, String)> {
    let m = |name: &str| pam.join("lib/security").join(name).display().to_string();
    let unix = m("pam_unix.so");
    let common = format!(
        "# Lightwhale (Nix image): local accounts from /etc/shadow.\n\
         auth     required {unix}\n\
         account  required {unix}\n\
         password required {unix} sha512 shadow\n\
         session  required {unix}\n"
    );
    let deny = m("pam_deny.so");
    let other = format!(
        "# Services without their own file are refused.\n\
         auth     required {deny}\naccount  required {deny}\npassword required {deny}\nsession  required {deny}\n"
    );
    let mut v: Vec<(&'static str, String)> =
        ["login", "sshd", "sudo", "passwd", "chpasswd"].into_iter().map(|s| (s, common.clone())).collect();
    v.push(("other", other));
    v
}

/// Pure: one mksquashfs pseudo definition that sets mode and owner of an existing path.
pub fn pseudo_mode(rel: &str, mode: u32, uid: u32, gid: u32) -> Result<String> {
    if rel.is_empty() || rel.starts_with('/') || rel.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(Error::Step {
            step: STEP,
            message: format!("{rel:?} cannot be written as a pseudo definition (relative path without spaces)"),
        });
    }
    Ok(format!("{rel} m {mode:o} {uid} {gid}"))
}

fn symlink(tree: &Path, rel: &str, target: &Path) -> Result<()> {
    let p = tree.join(rel.trim_start_matches('/'));
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).ctx(STEP, parent)?;
    }
    if std::fs::symlink_metadata(&p).is_ok() {
        std::fs::remove_file(&p).ctx(STEP, &p)?;
    }
    std::os::unix::fs::symlink(target, &p).ctx(STEP, &p)
}

/// Copies a store path (a directory, a file or a symlink) to the same path below `tree`.
fn copy_store_path(tree: &Path, store_path: &Path) -> Result<()> {
    let dst = tree.join(store_path.strip_prefix("/").unwrap_or(store_path));
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).ctx(STEP, parent)?;
    }
    let meta = std::fs::symlink_metadata(store_path).ctx(STEP, store_path)?;
    if meta.is_dir() {
        std::fs::create_dir_all(&dst).ctx(STEP, &dst)?;
        crate::tree::copy_tree(store_path, &dst)
    } else if meta.file_type().is_symlink() {
        symlink(
            tree,
            &dst.strip_prefix(tree).unwrap_or(&dst).to_string_lossy(),
            &std::fs::read_link(store_path).ctx(STEP, store_path)?,
        )
    } else {
        std::fs::copy(store_path, &dst).map(|_| ()).ctx(STEP, &dst)
    }
}

/// Store files are read-only; the copied kernel module tree is edited (pruned,
/// decompressed, indexed), so it must be writable.
fn make_writable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for p in std::iter::once(dir.to_path_buf()).chain(crate::tree::walk(dir).ctx(STEP, dir)?) {
        let meta = std::fs::symlink_metadata(&p).ctx(STEP, &p)?;
        if !meta.file_type().is_symlink() {
            let mode = meta.permissions().mode() | 0o200;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).ctx(STEP, &p)?;
        }
    }
    Ok(())
}

fn list_programs(env: &Path) -> Result<Vec<String>> {
    let bin = env.join("bin");
    let mut v: Vec<String> = std::fs::read_dir(&bin)
        .ctx(STEP, &bin)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// Builds the tree; returns the pseudo definitions the squashfs step needs.
pub fn build(r: &NixRoot) -> Result<Vec<String>> {
    let tree = r.tree;
    if tree.exists() {
        crate::tree::remove_tree(tree)?;
    }
    for d in DIRS {
        std::fs::create_dir_all(tree.join(d)).ctx(STEP, tree.join(d))?;
    }
    for (link, target) in LINKS {
        symlink(tree, link, Path::new(target))?;
    }
    let mut pseudo = vec![pseudo_mode("tmp", 0o1777, 0, 0)?, pseudo_mode("var/tmp", 0o1777, 0, 0)?];

    for (rel, target) in program_links(r.env, &list_programs(r.env)?) {
        symlink(tree, &rel, &target)?;
    }
    for (rel, target) in r.links {
        symlink(tree, rel, target)?;
    }

    // The kernel's modules, pruned as on Debian (the Debian path does the same in xtask).
    let moddir = tree.join("usr/lib/modules").join(r.release);
    std::fs::create_dir_all(&moddir).ctx(STEP, &moddir)?;
    crate::tree::copy_tree(&r.kernel_modules.join(r.release), &moddir)?;
    make_writable(&moddir)?;
    crate::kmods::prune(
        &moddir,
        &manifest::all(r.modules, |m| &m.prune.drop_kernel_modules),
        &manifest::all(r.modules, |m| &m.prune.require_kernel_modules),
    )?;
    crate::kmods::depmod(tree, r.release)?;
    let sources: Vec<crate::firmware::Source> =
        r.firmware.iter().map(|dir| crate::firmware::Source { dir, root: None }).collect();
    crate::firmware::install(tree, r.release, &sources, &crate::firmware::Rules::from_modules(r.modules)?)?;

    install::module_files(tree, r.modules, BuildPath::Nix)?;
    let applied = crate::users::apply(
        tree,
        &manifest::all(r.modules, |m| &m.groups),
        &manifest::all(r.modules, |m| &m.system_users),
        &manifest::all(r.modules, |m| &m.users),
        r.epoch,
    )?;
    pseudo.extend(applied.pseudo);

    for (service, text) in pam_services(r.pam) {
        install::write(tree, &format!("etc/pam.d/{service}"), &text)?;
    }
    for (rel, src) in r.setuid {
        let dst = tree.join(rel.trim_start_matches('/'));
        if std::fs::symlink_metadata(&dst).is_ok() {
            std::fs::remove_file(&dst).ctx(STEP, &dst)?;
        }
        std::fs::copy(src, &dst).ctx(STEP, &dst)?;
        pseudo.push(pseudo_mode(rel.trim_start_matches('/'), 0o4755, 0, 0)?);
    }
    // sudo refuses a sudoers file others can read or write; git only keeps 644 and 755.
    if tree.join("etc/sudoers").is_file() {
        pseudo.push(pseudo_mode("etc/sudoers", 0o440, 0, 0)?);
    }

    let release = install::release_text(r.version, r.build_id, r.epoch, ("NIXPKGS", r.nixpkgs));
    install::write_release(tree, &release)?;
    install::remove_machine_state(tree)?;

    // The closure last: the tidying above is for the files this build made, never for a
    // store path (a store below /tmp, as a test's may be, would otherwise be emptied).
    let store_paths = std::fs::read_to_string(r.store_paths).ctx(STEP, r.store_paths)?;
    let mut manifest_lines = Vec::new();
    for line in store_paths.lines().map(str::trim).filter(|l| !l.is_empty()) {
        copy_store_path(tree, Path::new(line))?;
        manifest_lines.push(Path::new(line).file_name().unwrap_or_default().to_string_lossy().into_owned());
    }
    manifest_lines.sort();
    install::write(tree, "usr/share/lightwhale/manifest", &(manifest_lines.join("\n") + "\n"))?;
    Ok(pseudo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny fake store: bash, coreutils, sudo, linux-pam, a kernel with one module, an
    /// env linking the programs, and a base module with a user.
    struct Fake {
        dir: PathBuf,
        store: PathBuf,
    }

    impl Fake {
        fn new(name: &str) -> Fake {
            // The fake store's paths are copied into the tree at their own absolute paths.
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/test-scratch")
                .join(format!("nixroot-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let store = dir.join("nix/store");
            std::fs::create_dir_all(&store).unwrap();
            Fake { dir, store }
        }
        fn file(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.store.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }
        fn link(&self, rel: &str, target: &Path) {
            let p = self.store.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn module(dir: &Path) -> Module {
        let m = dir.join("modules/base");
        std::fs::create_dir_all(m.join("rootfs/etc")).unwrap();
        std::fs::create_dir_all(m.join("nix-rootfs/etc")).unwrap();
        std::fs::write(m.join("rootfs/etc/motd"), "hello\n").unwrap();
        std::fs::write(m.join("nix-rootfs/etc/sudoers"), "%sudo ALL=(ALL:ALL) ALL\n").unwrap();
        std::fs::write(m.join("init.ron"), "(filesystems: (persisted: [\"/etc\", \"/home\"], tmpfs: [\"/tmp\"]))")
            .unwrap();
        std::fs::write(
            m.join("module.toml"),
            "description = \"base\"\n[nix]\npackages = [\"bash\"]\n[[users]]\nname = \"op\"\npassword = \"x\"\ngroups = [\"sudo\", \"docker\"]\nshell = \"/bin/bash\"\n[[groups]]\nname = \"docker\"\n",
        )
        .unwrap();
        manifest::load(&dir.join("modules")).unwrap().remove(0)
    }

    #[test]
    fn tree_from_a_fake_store() {
        let f = Fake::new("tree");
        let bash = f.file("aaa-bash/bin/bash", "#!bash\n").parent().unwrap().parent().unwrap().to_path_buf();
        let sudo = f.file("bbb-sudo/bin/sudo", "sudo binary\n").parent().unwrap().parent().unwrap().to_path_buf();
        let pam = f
            .file("ccc-linux-pam/lib/security/pam_unix.so", "so")
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let compose = f.file("ddd-docker-compose/libexec/docker/cli-plugins/docker-compose", "plugin");
        let kernel = f.store.join("eee-linux/lib/modules");
        f.file("eee-linux/lib/modules/6.12.0/modules.dep", "");
        f.file("eee-linux/lib/modules/6.12.0/modules.builtin", "kernel/fs/squashfs/squashfs.ko\n");
        f.file("eee-linux/lib/modules/6.12.0/modules.builtin.modinfo", "cfg80211.firmware=regulatory.db\0");
        // Firmware comes from outside the closure: only what a driver asks for is copied.
        let regdb = f.file("hhh-wireless-regdb/lib/firmware/regulatory.db", "db").parent().unwrap().to_path_buf();
        f.file("hhh-wireless-regdb/lib/firmware/unasked.bin", "x");
        let env = f.store.join("fff-env");
        f.link("fff-env/bin/bash", &bash.join("bin/bash"));
        f.link("fff-env/bin/sudo", &sudo.join("bin/sudo"));
        f.link("fff-env/bin/sh", &bash.join("bin/bash"));
        let one_file = f.file("ggg-single-file", "a store path that is a file");
        let paths: Vec<PathBuf> = vec![
            bash.clone(),
            sudo.clone(),
            pam.clone(),
            compose.parent().unwrap().parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf(),
            kernel.parent().unwrap().parent().unwrap().to_path_buf(),
            env.clone(),
            one_file,
        ];
        let store_paths = f.dir.join("store-paths");
        std::fs::write(&store_paths, paths.iter().map(|p| p.display().to_string() + "\n").collect::<String>()).unwrap();
        let m = module(&f.dir);
        let links = BTreeMap::from([("usr/libexec/docker/cli-plugins/docker-compose".to_string(), compose.clone())]);
        let setuid = BTreeMap::from([("usr/bin/sudo".to_string(), sudo.join("bin/sudo"))]);
        let tree = f.dir.join("tree");
        let pseudo = build(&NixRoot {
            store_paths: &store_paths,
            env: &env,
            links: &links,
            kernel_modules: &kernel,
            release: "6.12.0",
            pam: &pam,
            firmware: std::slice::from_ref(&regdb),
            setuid: &setuid,
            modules: std::slice::from_ref(&m),
            version: "0.1.0",
            build_id: "abc",
            nixpkgs: "b6018f87",
            epoch: 86_400 * 10,
            tree: &tree,
        })
        .unwrap();

        // The closure is in the tree at its store path.
        assert_eq!(
            std::fs::read_to_string(tree.join(bash.strip_prefix("/").unwrap()).join("bin/bash")).unwrap(),
            "#!bash\n"
        );
        // FHS: /usr/bin links into the env, /bin and /usr/sbin lead there too.
        assert_eq!(std::fs::read_link(tree.join("usr/bin/sh")).unwrap(), env.join("bin/sh"));
        assert_eq!(std::fs::read_link(tree.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(std::fs::read_link(tree.join("usr/sbin")).unwrap(), Path::new("bin"));
        assert_eq!(std::fs::read_link(tree.join("usr/libexec/docker/cli-plugins/docker-compose")).unwrap(), compose);
        // Kernel modules where the init and modprobe look, indexed.
        assert!(tree.join("usr/lib/modules/6.12.0/modules.dep.bin").exists());
        // Firmware where the kernel looks, only what was asked for.
        assert_eq!(std::fs::read_to_string(tree.join("usr/lib/firmware/regulatory.db")).unwrap(), "db");
        assert!(!tree.join("usr/lib/firmware/unasked.bin").exists());
        // Module files, Nix-only files, init config, mount points.
        assert_eq!(std::fs::read_to_string(tree.join("etc/motd")).unwrap(), "hello\n");
        assert!(tree.join("etc/sudoers").is_file());
        assert!(tree.join("usr/lib/lightwhale/modules/base/init.ron").is_file());
        assert!(tree.join("mnt/lightwhale-data").is_dir());
        // Accounts from Debian's base plus the module's; op's home owned by op in the image.
        let passwd = std::fs::read_to_string(tree.join("etc/passwd")).unwrap();
        assert!(
            passwd.starts_with("root:x:0:0:") && passwd.contains("\nop:x:1000:1000::/home/op:/bin/bash\n"),
            "{passwd}"
        );
        assert!(std::fs::read_to_string(tree.join("etc/group")).unwrap().contains("sudo:x:27:op\n"));
        assert!(pseudo.contains(&"home/op m 700 1000 1000".to_string()), "{pseudo:?}");
        // PAM names pam_unix by store path.
        let login = std::fs::read_to_string(tree.join("etc/pam.d/login")).unwrap();
        assert!(login.contains(&format!("auth     required {}/lib/security/pam_unix.so", pam.display())), "{login}");
        // sudo is a real file, setuid root in the image; sudoers 0440.
        assert!(!std::fs::symlink_metadata(tree.join("usr/bin/sudo")).unwrap().file_type().is_symlink());
        assert!(pseudo.contains(&"usr/bin/sudo m 4755 0 0".to_string()));
        assert!(pseudo.contains(&"etc/sudoers m 440 0 0".to_string()));
        assert!(pseudo.contains(&"tmp m 1777 0 0".to_string()));
        // Release and manifest say where it came from; no per-machine state.
        assert!(std::fs::read_to_string(tree.join("usr/lib/lightwhale/release"))
            .unwrap()
            .contains("NIXPKGS=b6018f87\n"));
        assert_eq!(
            std::fs::read_link(tree.join("etc/lightwhale-release")).unwrap(),
            Path::new("../usr/lib/lightwhale/release")
        );
        assert!(std::fs::read_to_string(tree.join("usr/share/lightwhale/manifest")).unwrap().contains("aaa-bash\n"));
        assert_eq!(std::fs::read_to_string(tree.join("etc/machine-id")).unwrap(), "");
    }

    #[test]
    fn pseudo_definitions_refuse_paths_mksquashfs_would_misread() {
        assert_eq!(pseudo_mode("usr/bin/sudo", 0o4755, 0, 0).unwrap(), "usr/bin/sudo m 4755 0 0");
        assert!(pseudo_mode("home/my user", 0o700, 1000, 1000).is_err());
        assert!(pseudo_mode("/etc/shadow", 0o640, 0, 42).is_err());
    }

    #[test]
    fn every_service_has_pam_and_unknown_ones_are_denied() {
        let v = pam_services(Path::new("/nix/store/x-linux-pam"));
        let names: Vec<&str> = v.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["login", "sshd", "sudo", "passwd", "chpasswd", "other"]);
        assert!(v[5].1.contains("/nix/store/x-linux-pam/lib/security/pam_deny.so"));
    }
}
