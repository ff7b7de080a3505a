//! `modules.alias`: which module drives a device, by its `modalias` string from sysfs.

#[derive(Debug, Default, Clone)]
pub struct AliasTable {
    /// (glob pattern, module name), in file order.
    rules: Vec<(String, String)>,
    /// Rule indexes by the literal bus prefix ("pci:", "usb:") of their pattern; rules whose
    /// prefix has a wildcard are in `generic`. modules.alias has ~30k rules and coldplug
    /// looks up every device: matching only the device's bus keeps that fast under TCG.
    by_bus: std::collections::HashMap<String, Vec<usize>>,
    generic: Vec<usize>,
}

/// "pci:v0000..." -> Some("pci:"); None when a wildcard comes before the first ':'.
fn bus_prefix(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let head = &s[..=colon];
    (!head.contains(['*', '?', '['])).then_some(head)
}

impl AliasTable {
    pub fn parse(text: &str) -> AliasTable {
        let rules = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("alias"), Some(pat), Some(module)) => Some((pat.to_string(), super::normalize(module))),
                    _ => None,
                }
            })
            .collect::<Vec<(String, String)>>();
        let mut by_bus: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
        let mut generic = Vec::new();
        for (i, (pat, _)) in rules.iter().enumerate() {
            match bus_prefix(pat) {
                Some(b) => by_bus.entry(b.to_string()).or_default().push(i),
                None => generic.push(i),
            }
        }
        AliasTable { rules, by_bus, generic }
    }

    /// Every module whose alias pattern matches `modalias`, in file order, without repeats.
    pub fn lookup(&self, modalias: &str) -> Vec<String> {
        let bus = bus_prefix(modalias).and_then(|b| self.by_bus.get(b)).map(Vec::as_slice).unwrap_or(&[]);
        let mut idx: Vec<usize> = bus.iter().chain(&self.generic).copied().collect();
        idx.sort_unstable();
        let mut out: Vec<String> = Vec::new();
        for i in idx {
            let (pat, module) = &self.rules[i];
            if glob_match(pat.as_bytes(), modalias.as_bytes()) && !out.contains(module) {
                out.push(module.clone());
            }
        }
        out
    }
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` classes (with `!`/`^` and ranges).
pub fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it consumed to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pat, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        // An unterminated class is a literal '['.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pat[start] == b'['`.
/// Returns (matched, index after the class) or None if the class is not terminated.
fn class_match(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            if pat[i] <= c && c <= pat[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match(
            b"pci:v00008086d00007010sv*sd*bc*sc*i*",
            b"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80"
        ));
        assert!(!glob_match(b"pci:v00008086d00007010sv*", b"pci:v00008086d00007011sv0"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"x[0-9]y", b"x7y"));
        assert!(!glob_match(b"x[!0-9]y", b"x7y"));
        assert!(glob_match(b"*ic08isc06ip50in*", b"usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"));
        assert!(!glob_match(b"abc", b"abcd"));
    }

    #[test]
    fn lookup_dedups_and_normalizes() {
        let t = AliasTable::parse(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net\n\
             alias virtio:d00000001v* virtio_net\n\
             alias virtio:d00000002v* virtio-blk\n\
             alias virtio:d0000000*v* virtio_net\n",
        );
        assert_eq!(t.lookup("virtio:d00000002v00001AF4"), vec!["virtio_blk".to_string(), "virtio_net".to_string()]);
        assert_eq!(t.lookup("virtio:d00000001v00001AF4"), vec!["virtio_net".to_string()]);
        assert!(t.lookup("acpi:PNP0C0C:").is_empty());
    }

    #[test]
    fn wildcard_bus_patterns_still_match() {
        let t = AliasTable::parse("alias acpi*:PNP0C0C:* button\nalias pci:v*d*sv*sd*bc01sc06i01* ahci\n");
        assert_eq!(t.lookup("acpi:PNP0C0C:"), vec!["button".to_string()]);
        assert_eq!(t.lookup("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"), vec!["ahci".to_string()]);
        assert!(t.lookup("usb:v1d2").is_empty());
    }
}
