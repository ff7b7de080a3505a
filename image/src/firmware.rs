//! Firmware for the kept drivers, chosen the same way on both build paths: the names each
//! kept kernel module may ask the kernel's firmware loader for (its `firmware=` entries,
//! what `modinfo -F firmware` prints) are matched against what the firmware packages ship
//! (Debian's firmware-* packages, nixpkgs' linux-firmware), and only those files go into the
//! image. Of a file that drivers try in several API versions (`[firmware] api_versions`),
//! only the newest one the driver can use is shipped; `[firmware] skip` leaves out files
//! that cost more than the hardware they serve is worth.
//!
//! The Debian path installs the packages and then prunes /usr/lib/firmware in place
//! (`prune_in_place`); the Nix path copies the selected files out of the store (`install`).
//! Both resolve symlinks into plain files: squashfs stores identical files once.

use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, Module};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// This file's own text: part of the staleness key of the build step that runs it.
pub const RECIPE: &str = include_str!("firmware.rs");

const STEP: &str = "firmware";

/// Where the kernel looks for firmware, relative to the root (/lib is /usr/lib).
pub const FIRMWARE_DIR: &str = "usr/lib/firmware";

/// The list of shipped firmware files in the image, for people.
pub const LIST: &str = "usr/share/lightwhale/firmware";

/// Suffixes of compressed firmware, in the order the kernel's loader tries them after the
/// plain name (CONFIG_FW_LOADER_COMPRESS_ZSTD and _XZ, set on both paths' kernels).
const COMPRESSED: &[&str] = &[".zst", ".xz"];

/// Files at least this big are stored xz-compressed, which the kernel's loader unpacks
/// (CONFIG_FW_LOADER_COMPRESS_XZ): xz packs firmware about a tenth smaller than squashfs's
/// zstd does, and squashfs stores such files as they are. Small files gain nothing worth
/// it (and regulatory.db, which setup-wifi reads, stays plain).
pub const COMPRESS_FROM: u64 = 64 * 1024;

/// How the kernel's XZ decoder wants them (nixpkgs' compressFirmwareXz makes them so too):
/// CRC32 and a 2 MiB dictionary. One thread per file, so the bytes are the same on every
/// machine.
const XZ_ARGS: &[&str] = &["--compress", "-T1", "-C", "crc32", "--lzma2=preset=9e,dict=2MiB", "--"];

/// Pure: whether a shipped firmware file (its stored name and size) gets compressed.
pub fn compress_it(name: &str, size: u64) -> bool {
    size >= COMPRESS_FROM && !COMPRESSED.iter().any(|suffix| name.ends_with(suffix))
}

/// Pure: the values of `key` in `.modinfo`-style data (NUL-separated `key=value` strings).
pub fn modinfo_values(data: &[u8], key: &str) -> Vec<String> {
    data.split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// Pure: the `firmware=` entries of a kernel module (an ELF object) from its `.modinfo`
/// section, in order. A module without the section asks for nothing.
pub fn module_firmware(ko: &[u8]) -> std::result::Result<Vec<String>, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(ko).map_err(|e| format!("not an ELF object: {e}"))?;
    let Some(section) = file.section_by_name(".modinfo") else { return Ok(Vec::new()) };
    let data = section.data().map_err(|e| format!("reading .modinfo: {e}"))?;
    Ok(modinfo_values(data, "firmware"))
}

/// Pure: (module, firmware) of the drivers built into the kernel, from
/// `modules.builtin.modinfo` (NUL-separated `module.firmware=name` entries).
pub fn builtin_firmware(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| {
            let (module, kv) = entry.split_once('.')?;
            Some((module.to_string(), kv.strip_prefix("firmware=")?.to_string()))
        })
        .collect()
}

/// An API version: dot-separated numbers (`89`, `7.13.21.0`), compared number by number.
pub type Version = Vec<u32>;

fn parse_version(s: &str) -> Option<Version> {
    s.split('.').map(|p| if p.is_empty() { None } else { p.parse().ok() }).collect()
}

const LITERAL_SEPARATOR: glob::MatchOptions =
    glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// One `[firmware] api_versions` pattern: a glob with `{N}` where the version goes
/// (`iwlwifi-*-{N}.ucode`, `ath10k/*/firmware-{N}.bin`).
#[derive(Debug, Clone)]
pub struct ApiPattern {
    before: glob::Pattern,
    after: String,
}

impl ApiPattern {
    pub fn parse(text: &str) -> std::result::Result<ApiPattern, String> {
        let (before, after) =
            text.split_once("{N}").ok_or_else(|| format!("{text:?} has no {{N}} where the version goes"))?;
        if after.contains("{N}") || after.contains(['*', '?', '[']) {
            return Err(format!("{text:?}: after {{N}} only plain text may follow (the file's suffix)"));
        }
        let before = glob::Pattern::new(before).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(ApiPattern { before, after: after.to_string() })
    }

    /// The family (the name with `{N}` for its version) and the version, when `name` is one
    /// of this pattern's files.
    pub fn split(&self, name: &str) -> Option<(String, Version)> {
        let rest = name.strip_suffix(self.after.as_str())?;
        let start = rest.rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |i| i + 1);
        let (prefix, digits) = rest.split_at(start);
        let version = parse_version(digits)?;
        self.before.matches_with(prefix, LITERAL_SEPARATOR).then(|| (format!("{prefix}{{N}}{}", self.after), version))
    }
}

/// The modules' `[firmware]` rules, parsed.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Module directories whose firmware ships (empty: every kept module's).
    pub drivers: Vec<String>,
    api: Vec<ApiPattern>,
    skip: Vec<glob::Pattern>,
}

impl Rules {
    pub fn new(api_versions: &[String], skip: &[String]) -> std::result::Result<Rules, String> {
        Ok(Rules {
            drivers: Vec::new(),
            api: api_versions.iter().map(|p| ApiPattern::parse(p)).collect::<std::result::Result<_, _>>()?,
            skip: skip
                .iter()
                .map(|p| glob::Pattern::new(p).map_err(|e| format!("skip {p:?}: {e}")))
                .collect::<std::result::Result<_, _>>()?,
        })
    }

    pub fn from_modules(modules: &[Module]) -> Result<Rules> {
        let api = manifest::all(modules, |m| &m.firmware.api_versions);
        let skip = manifest::all(modules, |m| &m.firmware.skip);
        let rules = Rules::new(&api, &skip)
            .map_err(|e| Error::Step { step: STEP, message: format!("modules/*/module.toml [firmware]: {e}") })?;
        Ok(Rules { drivers: manifest::all(modules, |m| &m.firmware.drivers), ..rules })
    }

    /// (pattern index, family, version) of the first pattern `name` belongs to.
    fn api_split(&self, name: &str) -> Option<(usize, String, Version)> {
        self.api.iter().enumerate().find_map(|(i, p)| p.split(name).map(|(family, v)| (i, family, v)))
    }

    fn skipped(&self, name: &str) -> bool {
        self.skip.iter().any(|p| p.matches_with(name, LITERAL_SEPARATOR))
    }
}

/// Pure: what a firmware directory offers, by the name drivers ask for -> the stored file
/// (relative path). `x.bin.zst` answers for `x.bin` as it does in the kernel's loader,
/// which prefers the plain file, then `.zst`, then `.xz`.
pub fn available(stored: impl IntoIterator<Item = String>) -> BTreeMap<String, String> {
    let mut best: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for file in stored {
        let (name, rank) = COMPRESSED
            .iter()
            .enumerate()
            .find_map(|(i, suffix)| file.strip_suffix(suffix).map(|n| (n.to_string(), i + 1)))
            .unwrap_or_else(|| (file.clone(), 0));
        if best.get(&name).is_none_or(|(r, _)| rank < *r) {
            best.insert(name, (rank, file));
        }
    }
    best.into_iter().map(|(name, (_, file))| (name, file)).collect()
}

/// What `select` chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Stored files to ship (relative to the firmware directory).
    pub files: BTreeSet<String>,
    /// Names drivers ask for that no package provides (common: drivers list firmware of
    /// chips whose files were never redistributed).
    pub missing: BTreeSet<String>,
    /// Names left out by `[firmware] skip`.
    pub skipped: BTreeSet<String>,
}

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// Pure: the files to ship for the names the kept drivers ask for. A glob (brcmfmac asks
/// for `brcm/brcmfmac*-sdio.*.bin`) takes every match. A name of an `api_versions` family
/// takes the newest file of that family at or below the highest version the drivers ask
/// for (they fall back from there), and nothing older.
pub fn select(requested: &BTreeSet<String>, available: &BTreeMap<String, String>, rules: &Rules) -> Selection {
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let mut missing = BTreeSet::new();
    let mut newest: BTreeMap<(usize, String), Version> = BTreeMap::new();
    for name in requested {
        if is_glob(name) {
            match glob::Pattern::new(name) {
                Ok(p) => {
                    wanted.extend(available.keys().filter(|n| p.matches_with(n, LITERAL_SEPARATOR)).map(String::as_str))
                }
                Err(_) => {
                    missing.insert(name.clone());
                }
            }
        } else if let Some((i, family, version)) = rules.api_split(name) {
            let highest = newest.entry((i, family)).or_insert_with(|| version.clone());
            if version > *highest {
                *highest = version;
            }
        } else if let Some((n, _)) = available.get_key_value(name) {
            wanted.insert(n);
        } else {
            missing.insert(name.clone());
        }
    }
    for ((i, family), highest) in newest {
        let best = available
            .keys()
            .filter_map(|n| {
                let (f, v) = rules.api[i].split(n)?;
                (f == family && v <= highest).then_some((v, n))
            })
            .max();
        match best {
            Some((_, n)) => {
                wanted.insert(n);
            }
            None => {
                missing
                    .insert(family.replace("{N}", &highest.iter().map(u32::to_string).collect::<Vec<_>>().join(".")));
            }
        }
    }
    let mut selection = Selection { missing, ..Default::default() };
    for name in wanted {
        if rules.skipped(name) {
            selection.skipped.insert(name.to_string());
        } else {
            selection.files.insert(available[name].clone());
        }
    }
    selection
}

/// Pure: module name -> path (below the release directory) from `modules.builtin`, whose
/// lines are the paths the built-in drivers would have as modules.
pub fn builtin_paths(modules_builtin: &str) -> BTreeMap<String, String> {
    modules_builtin
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|path| {
            let file = path.rsplit('/').next()?;
            let name = file.split('.').next()?.replace('-', "_");
            Some((name, path.to_string()))
        })
        .collect()
}

/// Pure: whether a module (its path below the release directory, `kernel/drivers/...`)
/// is one whose firmware ships: below one of `drivers` (directories or files below
/// `kernel/`, a trailing `*` matching a name prefix, as in `drop_kernel_modules`), or any
/// module when `drivers` is empty.
pub fn in_scope(drivers: &[String], module_path: &str) -> bool {
    drivers.is_empty() || crate::kmods::is_dropped(drivers, module_path)
}

/// Every firmware name that the modules under `moddir` (decompressed .ko files, as
/// `kmods::prune` leaves them) and the kernel's built-in drivers ask for, of the drivers
/// in scope (see `in_scope`).
pub fn requested(moddir: &Path, drivers: &[String]) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for p in crate::tree::walk(moddir).ctx(STEP, moddir)? {
        let rel = p.strip_prefix(moddir).unwrap_or(&p).to_string_lossy();
        if p.extension().is_some_and(|e| e == "ko") && in_scope(drivers, &rel) {
            let data = std::fs::read(&p).ctx(STEP, &p)?;
            let entries = module_firmware(&data)
                .map_err(|message| Error::Step { step: STEP, message: format!("{}: {message}", p.display()) })?;
            names.extend(entries);
        }
    }
    if let Ok(data) = std::fs::read(moddir.join("modules.builtin.modinfo")) {
        let paths = builtin_paths(&std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default());
        for (module, firmware) in builtin_firmware(&data) {
            if paths.get(&module).is_some_and(|p| in_scope(drivers, p)) || drivers.is_empty() {
                names.insert(firmware);
            }
        }
    }
    Ok(names)
}

/// A directory firmware is taken from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub dir: &'a Path,
    /// The root tree that absolute symlinks inside `dir` point into (a Debian tree's
    /// `regulatory.db` leads through /etc/alternatives); `None` for the host's own paths
    /// (the Nix store).
    pub root: Option<&'a Path>,
}

/// The file `path` leads to through symlinks; absolute link targets are taken below `root`
/// when given.
fn resolve(path: &Path, root: Option<&Path>) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        if !std::fs::symlink_metadata(&p)?.file_type().is_symlink() {
            return Ok(p);
        }
        let target = std::fs::read_link(&p)?;
        p = match (target.strip_prefix("/"), root) {
            (Ok(inside), Some(root)) => root.join(inside),
            (Ok(_), None) => target,
            (Err(_), _) => p.parent().unwrap_or(Path::new("/")).join(target),
        };
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP))
}

/// Stored files (files and symlinks, relative paths) of a firmware directory.
fn stored_files(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    for p in crate::tree::walk(dir).ctx(STEP, dir)? {
        if !std::fs::symlink_metadata(&p).ctx(STEP, &p)?.is_dir() {
            v.push(p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().into_owned());
        }
    }
    Ok(v)
}

/// What `install` put into the tree.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub files: usize,
    /// Before compression.
    pub bytes: u64,
    /// As stored in the tree.
    pub stored_bytes: u64,
    pub missing: usize,
    pub skipped: usize,
}

/// xz-compresses `files` in place (`x` becomes `x.xz`), a few at a time on every CPU.
fn compress(files: &[PathBuf]) -> Result<()> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let mut lanes: Vec<Vec<&PathBuf>> = vec![Vec::new(); jobs];
    for (i, f) in files.iter().enumerate() {
        lanes[i % jobs].push(f);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = lanes
            .iter()
            .filter(|lane| !lane.is_empty())
            .map(|lane| {
                scope.spawn(move || {
                    lane.chunks(64).try_for_each(|chunk| {
                        crate::cmd::output(STEP, std::process::Command::new("xz").args(XZ_ARGS).args(chunk)).map(|_| ())
                    })
                })
            })
            .collect();
        running.into_iter().try_for_each(|t| {
            t.join().unwrap_or_else(|_| Err(Error::Step { step: STEP, message: "xz worker panicked".into() }))
        })
    })
}

/// Copies the firmware the modules of `tree/usr/lib/modules/<release>` ask for from
/// `sources` (the first source that has a name wins) into the tree's firmware directory,
/// symlinks resolved, and lists it in /usr/share/lightwhale/firmware.
pub fn install(tree: &Path, release: &str, sources: &[Source], rules: &Rules) -> Result<Installed> {
    copy_selected(tree, release, sources, rules, &tree.join(FIRMWARE_DIR))
}

/// The Debian path: the firmware packages were unpacked into the tree's firmware
/// directory; only what `install` would select from them stays.
pub fn prune_in_place(tree: &Path, release: &str, rules: &Rules) -> Result<Installed> {
    let dir = tree.join(FIRMWARE_DIR);
    let selected = tree.join("usr/lib/firmware.selected");
    if selected.exists() {
        std::fs::remove_dir_all(&selected).ctx(STEP, &selected)?;
    }
    // Copied out first: links in the packaged directory may lead anywhere in it.
    let done = copy_selected(tree, release, &[Source { dir: &dir, root: Some(tree) }], rules, &selected)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ctx(STEP, &dir)?;
    }
    if selected.exists() {
        std::fs::rename(&selected, &dir).ctx(STEP, &selected)?;
    }
    Ok(done)
}

fn copy_selected(tree: &Path, release: &str, sources: &[Source], rules: &Rules, dest: &Path) -> Result<Installed> {
    let requested = requested(&tree.join("usr/lib/modules").join(release), &rules.drivers)?;
    let mut offered: BTreeMap<String, (Source, String)> = BTreeMap::new();
    for source in sources {
        for (name, file) in available(stored_files(source.dir)?) {
            offered.entry(name).or_insert((*source, file));
        }
    }
    let names: BTreeMap<String, String> = offered.iter().map(|(n, (_, f))| (n.clone(), f.clone())).collect();
    let selection = select(&requested, &names, rules);
    let by_file: BTreeMap<&str, &Source> = offered.values().map(|(s, f)| (f.as_str(), s)).collect();
    let mut done =
        Installed { missing: selection.missing.len(), skipped: selection.skipped.len(), ..Default::default() };
    let mut stored = Vec::new();
    let mut to_compress = Vec::new();
    for file in &selection.files {
        let source = by_file[file.as_str()];
        let from = resolve(&source.dir.join(file), source.root).ctx(STEP, source.dir.join(file))?;
        let to = dest.join(file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).ctx(STEP, parent)?;
        }
        let size = std::fs::copy(&from, &to).ctx(STEP, &from)?;
        done.bytes += size;
        done.files += 1;
        if compress_it(file, size) {
            to_compress.push(to);
            stored.push(format!("{file}.xz"));
        } else {
            stored.push(file.clone());
        }
    }
    compress(&to_compress)?;
    for f in &stored {
        done.stored_bytes += std::fs::metadata(dest.join(f)).ctx(STEP, dest.join(f))?.len();
    }
    stored.sort();
    let list: String = stored.iter().map(|f| format!("{f}\n")).collect();
    crate::install::write(tree, LIST, &list)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn offer(files: &[&str]) -> BTreeMap<String, String> {
        available(files.iter().map(|s| s.to_string()))
    }

    fn rules() -> Rules {
        Rules::new(
            &["iwlwifi-*-{N}.ucode".into(), "ath10k/*/*/firmware-{N}.bin".into(), "bnx2x/bnx2x-*-{N}.fw".into()],
            &["iwlwifi-1000-*".into()],
        )
        .unwrap()
    }

    #[test]
    fn modinfo_entries_by_key() {
        let data = b"license=GPL\0firmware=rtl_nic/rtl8168d-1.fw\0\0firmware=rtl_nic/rtl8168d-2.fw\0firmwarex=no\0";
        assert_eq!(modinfo_values(data, "firmware"), ["rtl_nic/rtl8168d-1.fw", "rtl_nic/rtl8168d-2.fw"]);
        assert_eq!(modinfo_values(data, "license"), ["GPL"]);
        let builtin = b"e100.firmware=e100/d101m_ucode.bin\0e100.license=GPL\0cfg80211.firmware=regulatory.db\0";
        assert_eq!(
            builtin_firmware(builtin),
            [("e100".into(), "e100/d101m_ucode.bin".into()), ("cfg80211".into(), "regulatory.db".into())]
        );
        let paths =
            builtin_paths("kernel/net/wireless/cfg80211.ko\nkernel/drivers/net/ethernet/intel/e1000e/e1000e.ko\n");
        assert_eq!(paths["cfg80211"], "kernel/net/wireless/cfg80211.ko");
        assert_eq!(
            builtin_paths("kernel/drivers/usb/atm/ueagle-atm.ko\n")["ueagle_atm"],
            "kernel/drivers/usb/atm/ueagle-atm.ko"
        );
    }

    #[test]
    fn firmware_from_a_real_elf_object() {
        use object::write::{Object, StandardSection};
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0xc3], 1);
        let modinfo = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        obj.append_section_data(modinfo, b"license=GPL\0firmware=iwlwifi-cc-a0-77.ucode\0firmware=a/b.bin\0", 1);
        let ko = obj.write().unwrap();
        assert_eq!(module_firmware(&ko).unwrap(), ["iwlwifi-cc-a0-77.ucode", "a/b.bin"]);

        let mut plain = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = plain.section_id(StandardSection::Text);
        plain.append_section_data(text, &[0xc3], 1);
        assert!(module_firmware(&plain.write().unwrap()).unwrap().is_empty());
        assert!(module_firmware(b"not an elf").is_err());
    }

    #[test]
    fn only_big_plain_files_are_compressed() {
        assert!(compress_it("iwlwifi-cc-a0-77.ucode", 1_400_000));
        assert!(!compress_it("regulatory.db", 6_348));
        assert!(!compress_it("rtl_nic/rtl8125b-2.fw.zst", 1_000_000));
        assert!(!compress_it("x.bin.xz", 1_000_000));
        assert!(compress_it("x.bin", COMPRESS_FROM));
    }

    #[test]
    fn api_patterns_split_family_and_version() {
        let p = ApiPattern::parse("iwlwifi-*-{N}.ucode").unwrap();
        assert_eq!(p.split("iwlwifi-so-a0-gf-a0-89.ucode"), Some(("iwlwifi-so-a0-gf-a0-{N}.ucode".into(), vec![89])));
        assert_eq!(p.split("iwlwifi-100-5.ucode"), Some(("iwlwifi-100-{N}.ucode".into(), vec![5])));
        assert_eq!(p.split("iwlwifi-so-a0-gf-a0.pnvm"), None);
        let b = ApiPattern::parse("bnx2x/bnx2x-*-{N}.fw").unwrap();
        assert_eq!(
            b.split("bnx2x/bnx2x-e1h-7.13.21.0.fw"),
            Some(("bnx2x/bnx2x-e1h-{N}.fw".into(), vec![7, 13, 21, 0]))
        );
        // `*` stays within one directory.
        let a = ApiPattern::parse("ath10k/*/firmware-{N}.bin").unwrap();
        assert_eq!(a.split("ath10k/QCA6174/hw3.0/firmware-6.bin"), None);
        let a = ApiPattern::parse("ath10k/*/*/firmware-{N}.bin").unwrap();
        assert_eq!(
            a.split("ath10k/QCA6174/hw3.0/firmware-6.bin"),
            Some(("ath10k/QCA6174/hw3.0/firmware-{N}.bin".into(), vec![6]))
        );
        assert!(ApiPattern::parse("no-version.bin").is_err());
        assert!(ApiPattern::parse("x-{N}.*").is_err());
    }

    #[test]
    fn the_newest_version_at_or_below_what_the_driver_asks_for() {
        // The driver asks for API 89 (and falls back below it); 72 and 77 are packaged.
        let offered = offer(&[
            "iwlwifi-so-a0-jf-b0-72.ucode",
            "iwlwifi-so-a0-jf-b0-77.ucode",
            "iwlwifi-so-a0-gf-a0-72.ucode",
            "iwlwifi-so-a0-gf-a0-89.ucode",
            "iwlwifi-so-a0-gf-a0-92.ucode",
            "iwlwifi-so-a0-gf-a0.pnvm",
        ]);
        let s = select(
            &set(&["iwlwifi-so-a0-jf-b0-89.ucode", "iwlwifi-so-a0-gf-a0-89.ucode", "iwlwifi-so-a0-gf-a0.pnvm"]),
            &offered,
            &rules(),
        );
        assert_eq!(
            s.files,
            set(&["iwlwifi-so-a0-gf-a0-89.ucode", "iwlwifi-so-a0-gf-a0.pnvm", "iwlwifi-so-a0-jf-b0-77.ucode"])
        );
        assert!(s.missing.is_empty());
    }

    #[test]
    fn several_requested_versions_ship_only_the_newest() {
        let offered = offer(&[
            "ath10k/QCA9377/hw1.0/firmware-5.bin",
            "ath10k/QCA9377/hw1.0/firmware-6.bin",
            "ath10k/QCA9377/hw1.0/board.bin",
            "bnx2x/bnx2x-e2-7.13.1.0.fw",
            "bnx2x/bnx2x-e2-7.13.15.0.fw",
            "bnx2x/bnx2x-e2-7.13.21.0.fw",
        ]);
        let rules = Rules::new(&["ath10k/*/*/firmware-{N}.bin".into(), "bnx2x/bnx2x-*-{N}.fw".into()], &[]).unwrap();
        let s = select(
            &set(&[
                "ath10k/QCA9377/hw1.0/firmware-5.bin",
                "ath10k/QCA9377/hw1.0/firmware-6.bin",
                "ath10k/QCA9377/hw1.0/board.bin",
                "bnx2x/bnx2x-e2-7.13.15.0.fw",
                "bnx2x/bnx2x-e2-7.13.21.0.fw",
            ]),
            &offered,
            &rules,
        );
        assert_eq!(
            s.files,
            set(&[
                "ath10k/QCA9377/hw1.0/board.bin",
                "ath10k/QCA9377/hw1.0/firmware-6.bin",
                "bnx2x/bnx2x-e2-7.13.21.0.fw"
            ])
        );
    }

    #[test]
    fn numbered_names_outside_api_patterns_are_different_chips() {
        // r8169 asks for both: they are two chip revisions, not two versions.
        let offered = offer(&["rtl_nic/rtl8168d-1.fw", "rtl_nic/rtl8168d-2.fw", "rtl_nic/rtl8168e-3.fw"]);
        let s = select(&set(&["rtl_nic/rtl8168d-1.fw", "rtl_nic/rtl8168d-2.fw"]), &offered, &rules());
        assert_eq!(s.files, set(&["rtl_nic/rtl8168d-1.fw", "rtl_nic/rtl8168d-2.fw"]));
    }

    #[test]
    fn globs_missing_skipped_and_compressed_files() {
        let offered = offer(&[
            "brcm/brcmfmac4356-sdio.bin",
            "brcm/brcmfmac4356-sdio.AP6356S.txt.zst",
            "brcm/brcmfmac4356-pcie.bin",
            "rtl_nic/rtl8125b-2.fw.zst",
            "rtl_nic/rtl8125b-2.fw.xz",
            "regulatory.db.xz",
            "regulatory.db",
            "iwlwifi-1000-5.ucode",
        ]);
        let s = select(
            &set(&[
                "brcm/brcmfmac*-sdio.*.txt",
                "brcm/brcmfmac*-sdio.bin",
                "rtl_nic/rtl8125b-2.fw",
                "regulatory.db",
                "tigon/tg3.bin",
                "iwlwifi-1000-5.ucode",
                "iwlwifi-6000-4.ucode",
            ]),
            &offered,
            &rules(),
        );
        assert_eq!(
            s.files,
            set(&[
                "brcm/brcmfmac4356-sdio.AP6356S.txt.zst",
                "brcm/brcmfmac4356-sdio.bin",
                "regulatory.db",
                "rtl_nic/rtl8125b-2.fw.zst"
            ])
        );
        assert_eq!(s.missing, set(&["iwlwifi-6000-4.ucode", "tigon/tg3.bin"]));
        assert_eq!(s.skipped, set(&["iwlwifi-1000-5.ucode"]));
    }

    /// A scratch directory below target/ (not /tmp: the tests of the image crate may run
    /// where /tmp is small).
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-scratch")
            .join(format!("firmware-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ko(firmware: &[&str]) -> Vec<u8> {
        use object::write::{Object, StandardSection};
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0xc3], 1);
        let modinfo = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        let data: Vec<u8> = firmware.iter().flat_map(|f| format!("firmware={f}\0").into_bytes()).collect();
        obj.append_section_data(modinfo, &data, 1);
        obj.write().unwrap()
    }

    #[test]
    fn prune_in_place_keeps_what_drivers_ask_for_with_links_resolved_in_the_tree() {
        let tree = scratch("prune");
        let moddir = tree.join("usr/lib/modules/6.12.0/kernel");
        std::fs::create_dir_all(moddir.join("net")).unwrap();
        std::fs::write(moddir.join("net/r8169.ko"), ko(&["rtl_nic/rtl8168d-1.fw", "rtl_nic/absent.fw"])).unwrap();
        std::fs::write(moddir.join("net/cfg80211.ko"), ko(&["regulatory.db"])).unwrap();
        // Out of scope: its firmware stays out even though it is packaged.
        std::fs::create_dir_all(moddir.join("crypto")).unwrap();
        std::fs::write(moddir.join("crypto/qat.ko"), ko(&["qat_c62x.bin"])).unwrap();
        let fw = tree.join(FIRMWARE_DIR);
        std::fs::create_dir_all(fw.join("rtl_nic")).unwrap();
        std::fs::create_dir_all(fw.join("iwlwifi")).unwrap();
        std::fs::write(fw.join("rtl_nic/rtl8168d-1.fw"), "r8168d-1").unwrap();
        std::fs::write(fw.join("rtl_nic/rtl8168e-1.fw"), "not asked for").unwrap();
        std::fs::write(fw.join("iwlwifi/big.ucode"), "not asked for").unwrap();
        std::fs::write(fw.join("qat_c62x.bin"), "out of scope").unwrap();
        // Debian's alternatives: an absolute link through /etc, meant inside the tree.
        std::fs::write(fw.join("regulatory.db-debian"), "regdb").unwrap();
        std::fs::create_dir_all(tree.join("etc/alternatives")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/lib/firmware/regulatory.db-debian",
            tree.join("etc/alternatives/regulatory.db"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/alternatives/regulatory.db", fw.join("regulatory.db")).unwrap();

        let rules = Rules { drivers: vec!["net".into()], ..Rules::default() };
        let done = prune_in_place(&tree, "6.12.0", &rules).unwrap();
        assert_eq!((done.files, done.missing, done.bytes), (2, 1, 13));
        assert_eq!(std::fs::read_to_string(fw.join("rtl_nic/rtl8168d-1.fw")).unwrap(), "r8168d-1");
        assert!(!std::fs::symlink_metadata(fw.join("regulatory.db")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(fw.join("regulatory.db")).unwrap(), "regdb");
        assert!(!fw.join("rtl_nic/rtl8168e-1.fw").exists() && !fw.join("iwlwifi").exists());
        assert!(!fw.join("qat_c62x.bin").exists());
        assert!(!tree.join("usr/lib/firmware.selected").exists());
        assert_eq!(std::fs::read_to_string(tree.join(LIST)).unwrap(), "regulatory.db\nrtl_nic/rtl8168d-1.fw\n");
        std::fs::remove_dir_all(&tree).unwrap();
    }

    #[test]
    fn install_takes_each_name_from_the_first_source_that_has_it() {
        let dir = scratch("install");
        let tree = dir.join("tree");
        let moddir = tree.join("usr/lib/modules/6.12.0");
        std::fs::create_dir_all(&moddir).unwrap();
        std::fs::write(moddir.join("iwlwifi.ko"), ko(&["iwlwifi-cc-a0-77.ucode", "regulatory.db", "big.bin"])).unwrap();
        let linux_firmware = dir.join("linux-firmware/lib/firmware");
        let regdb = dir.join("wireless-regdb/lib/firmware");
        std::fs::create_dir_all(&linux_firmware).unwrap();
        std::fs::create_dir_all(&regdb).unwrap();
        std::fs::write(linux_firmware.join("iwlwifi-cc-a0-72.ucode"), "72").unwrap();
        std::fs::write(linux_firmware.join("iwlwifi-cc-a0-77.ucode.zst"), "77").unwrap();
        // Big enough to be stored xz-compressed.
        let big: Vec<u8> = (0..COMPRESS_FROM as usize + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(linux_firmware.join("big.bin"), &big).unwrap();
        // A relative link as linux-firmware's `make dedup` leaves them.
        std::os::unix::fs::symlink("iwlwifi-cc-a0-72.ucode", linux_firmware.join("iwlwifi-cc-a0-59.ucode")).unwrap();
        std::fs::write(regdb.join("regulatory.db"), "db").unwrap();
        let sources = [Source { dir: &linux_firmware, root: None }, Source { dir: &regdb, root: None }];
        let done = install(&tree, "6.12.0", &sources, &rules()).unwrap();
        assert_eq!(done.files, 3);
        let fw = tree.join(FIRMWARE_DIR);
        assert_eq!(std::fs::read_to_string(fw.join("iwlwifi-cc-a0-77.ucode.zst")).unwrap(), "77");
        assert_eq!(std::fs::read_to_string(fw.join("regulatory.db")).unwrap(), "db");
        assert!(!fw.join("iwlwifi-cc-a0-72.ucode").exists());
        // The big file as the kernel unpacks it: xz with CRC32, and the same bytes back.
        assert!(!fw.join("big.bin").exists());
        let out = std::process::Command::new("xz").args(["-dc", "--"]).arg(fw.join("big.bin.xz")).output().unwrap();
        assert_eq!(out.stdout, big);
        let info =
            std::process::Command::new("xz").args(["--robot", "-lv"]).arg(fw.join("big.bin.xz")).output().unwrap();
        assert!(String::from_utf8_lossy(&info.stdout).contains("CRC32"));
        assert!(done.stored_bytes < done.bytes);
        assert_eq!(
            std::fs::read_to_string(tree.join(LIST)).unwrap(),
            "big.bin.xz\niwlwifi-cc-a0-77.ucode.zst\nregulatory.db\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
