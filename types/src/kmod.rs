//! Kernel modules as the build and the init both read them: `modules.dep` (which file holds
//! a module and what it needs loaded first, and `modules.builtin`) and module names.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Module name as the kernel knows it: file stem without `.ko*`, dashes as underscores.
pub fn normalize(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = match base.find(".ko") {
        Some(i) => &base[..i],
        None => base,
    };
    stem.replace('-', "_")
}

#[derive(Debug, Default, Clone)]
pub struct DepTable {
    /// normalized name -> (path relative to the module dir, dependency names)
    entries: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl DepTable {
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> DepTable {
        let mut entries = BTreeMap::new();
        for line in modules_dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(normalize).collect();
            entries.insert(normalize(path), (path.to_string(), deps));
        }
        let builtin = modules_builtin.lines().filter(|l| !l.trim().is_empty()).map(normalize).collect();
        DepTable { entries, builtin }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    pub fn path(&self, name: &str) -> Option<&str> {
        self.entries.get(&normalize(name)).map(|(p, _)| p.as_str())
    }

    /// Direct dependencies of a module (normalized names).
    pub fn deps_of(&self, name: &str) -> &[String] {
        self.entries.get(&normalize(name)).map(|(_, d)| d.as_slice()).unwrap_or(&[])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(&normalize(name))
    }

    /// Names to load, dependencies before dependants, each once. Built-in modules are
    /// dropped; unknown names are returned separately so the caller can report them.
    pub fn load_order<'a>(&self, wanted: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<String>) {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut unknown = Vec::new();
        for name in wanted {
            let name = normalize(name);
            if self.builtin.contains(&name) {
                continue;
            }
            if !self.entries.contains_key(&name) {
                unknown.push(name);
                continue;
            }
            self.visit(&name, &mut seen, &mut order);
        }
        (order, unknown)
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some((_, deps)) = self.entries.get(name) {
            for d in deps {
                self.visit(d, seen, order);
            }
            order.push(name.to_string());
        }
    }

    /// The `modules.dep` lines for `names` and everything they need, for a smaller tree.
    pub fn closure_lines<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<String>) {
        let (order, unknown) = self.load_order(names);
        let lines = order
            .iter()
            .map(|n| {
                let (path, deps) = &self.entries[n];
                let dep_paths: Vec<&str> =
                    deps.iter().filter_map(|d| self.entries.get(d)).map(|(p, _)| p.as_str()).collect();
                format!("{path}: {}", dep_paths.join(" ")).trim_end().to_string()
            })
            .collect();
        (lines, unknown)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalize_paths_and_dashes() {
        assert_eq!(super::normalize("kernel/fs/squashfs/squashfs.ko.xz"), "squashfs");
        assert_eq!(super::normalize("kernel/drivers/ata/ata_piix.ko.zst"), "ata_piix");
        assert_eq!(super::normalize("crc32c-intel"), "crc32c_intel");
    }

    use super::*;

    const DEP: &str = "\
kernel/fs/overlayfs/overlay.ko.xz:
kernel/fs/squashfs/squashfs.ko.xz:
kernel/drivers/block/loop.ko.xz:
kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz
kernel/fs/jbd2/jbd2.ko.xz: kernel/lib/crc16.ko.xz
kernel/fs/mbcache.ko.xz:
kernel/lib/crc16.ko.xz:
";

    #[test]
    fn dependencies_come_first_and_once() {
        let t = DepTable::parse(DEP, "kernel/lib/zstd.ko\n");
        let (order, unknown) = t.load_order(["ext4", "loop", "jbd2"]);
        assert!(unknown.is_empty());
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(pos("crc16") < pos("jbd2"));
        assert!(pos("jbd2") < pos("ext4"));
        assert!(pos("mbcache") < pos("ext4"));
        assert_eq!(order.len(), 5);
    }

    #[test]
    fn builtin_and_unknown() {
        let t = DepTable::parse(DEP, "kernel/drivers/virtio/virtio_pci.ko\n");
        let (order, unknown) = t.load_order(["virtio-pci", "nosuchmod", "loop"]);
        assert_eq!(order, vec!["loop".to_string()]);
        assert_eq!(unknown, vec!["nosuchmod".to_string()]);
        assert!(t.is_builtin("virtio_pci"));
    }

    #[test]
    fn closure_keeps_paths() {
        let t = DepTable::parse(DEP, "");
        let (lines, _) = t.closure_lines(["jbd2"]);
        assert_eq!(
            lines,
            vec![
                "kernel/lib/crc16.ko.xz:".to_string(),
                "kernel/fs/jbd2/jbd2.ko.xz: kernel/lib/crc16.ko.xz".to_string()
            ]
        );
    }
}
