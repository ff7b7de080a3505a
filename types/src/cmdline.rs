//! Kernel command line options that Lightwhale understands (`lightwhale.*`).
//!
//! Pure parsing: the caller reads `/proc/cmdline` and hands the text in.

use std::time::Duration;

/// The kernel command line every Lightwhale boot entry uses (boot loaders, direct-kernel
/// test boots). Serial console last, so it is /dev/console. Transparent huge pages off:
/// with THP the kernel keeps ~70 MB free as a reserve on a 2 GiB machine and Go daemons
/// (dockerd, containerd) grow by tens of MB; a small Docker host is better without.
///
/// Then the Kernel Self Protection Project's recommendations that a Docker host can take
/// (docs/security.md, "The kernel", says what each costs and how to turn it off at the boot prompt):
/// - `lockdown=integrity`: no unsigned modules, no /dev/mem, no kexec of unsigned kernels
///   (Debian's modules are signed, and the image's decompressed ones keep the signature);
/// - `slab_nomerge`: separate slab caches, so an overflow in one cannot reach another's;
/// - `init_on_free=1`: freed memory is zeroed (no stale secrets, no use-after-free data);
/// - `page_alloc.shuffle=1`: randomised page allocator free lists;
/// - `randomize_kstack_offset=on`: a random kernel stack offset on every syscall;
/// - `debugfs=off`: no /sys/kernel/debug (a large, unhardened interface);
/// - `proc_mem.force_override=never`: /proc/<pid>/mem cannot write to read-only memory.
pub const KERNEL_CMDLINE: &str = "console=tty0 console=ttyS0,115200 transparent_hugepage=never \
    lockdown=integrity slab_nomerge init_on_free=1 page_alloc.shuffle=1 randomize_kstack_offset=on \
    debugfs=off proc_mem.force_override=never";

/// The hardening options of KERNEL_CMDLINE, as the VM tests and docs list them.
pub const KSPP_OPTIONS: &[&str] = &[
    "lockdown=integrity",
    "slab_nomerge",
    "init_on_free=1",
    "page_alloc.shuffle=1",
    "randomize_kstack_offset=on",
    "debugfs=off",
    "proc_mem.force_override=never",
];

/// What to do about persistence on this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistenceMode {
    /// Scan for a labelled device or a magic header, fall back to tmpfs.
    Auto,
    /// Ignore every device; persisted directories live on a tmpfs.
    Tmpfs,
}

/// The options this file understands, for the warning about an unknown one.
pub const KNOWN: &str =
    "lightwhale.persistence=auto|tmpfs, lightwhale.debug, lightwhale.settle=SECONDS, lightwhale.seccomp=log, lightwhale.nocloud=on|off, lightwhale.swap=on|off";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub persistence: PersistenceMode,
    /// Read a cloud-init NoCloud seed (a `cidata` filesystem) at boot; `lightwhale.nocloud=off`
    /// ignores seeds.
    pub nocloud: bool,
    /// A swap file on the persistence disk (`space::swap_bytes`); `lightwhale.swap=off` does
    /// without.
    pub swap: bool,
    pub debug: bool,
    /// The longest the early boot waits for block devices before scanning. It stops as soon
    /// as they have settled; this bound only matters while devices keep appearing (slow
    /// USB sticks, a controller still probing on a loaded machine).
    pub settle: Duration,
    /// `lightwhale.seccomp=log`: allow-list misses are logged instead of denied, to find
    /// what a daemon's profile lacks.
    pub seccomp: crate::seccomp::Mode,
    /// Options we did not recognise, reported on the console so typos are visible.
    pub unknown: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            persistence: PersistenceMode::Auto,
            nocloud: true,
            swap: true,
            debug: false,
            settle: Duration::from_secs(15),
            seccomp: crate::seccomp::Mode::Enforce,
            unknown: Vec::new(),
        }
    }
}

pub fn parse(cmdline: &str) -> Options {
    let mut opts = Options::default();
    for word in cmdline.split_whitespace() {
        let Some(rest) = word.strip_prefix("lightwhale.") else {
            continue;
        };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (rest, None),
        };
        match (key, value) {
            ("persistence", Some("auto")) => opts.persistence = PersistenceMode::Auto,
            ("persistence", Some("tmpfs")) => opts.persistence = PersistenceMode::Tmpfs,
            ("debug", None | Some("1") | Some("on")) => opts.debug = true,
            ("debug", Some("0") | Some("off")) => opts.debug = false,
            ("seccomp", Some("log")) => opts.seccomp = crate::seccomp::Mode::Log,
            ("seccomp", Some("enforce")) => opts.seccomp = crate::seccomp::Mode::Enforce,
            ("nocloud", Some("on") | Some("1")) => opts.nocloud = true,
            ("nocloud", Some("off") | Some("0")) => opts.nocloud = false,
            ("swap", Some("on") | Some("1")) => opts.swap = true,
            ("swap", Some("off") | Some("0")) => opts.swap = false,
            ("settle", Some(v)) => match parse_seconds(v) {
                Some(d) => opts.settle = d,
                None => opts.unknown.push(word.to_string()),
            },
            _ => opts.unknown.push(word.to_string()),
        }
    }
    opts
}

/// Accepts `5`, `5s`, `2.5` and `500ms`.
fn parse_seconds(v: &str) -> Option<Duration> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(Duration::from_millis);
    }
    let v = v.strip_suffix('s').unwrap_or(v);
    let secs: f64 = v.parse().ok()?;
    (0.0..3600.0).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_lightwhale_options() {
        let o = parse("BOOT_IMAGE=/boot/vmlinuz console=ttyS0,115200 quiet");
        assert_eq!(o, Options::default());
    }

    #[test]
    fn persistence_tmpfs_and_debug() {
        let o = parse("console=tty0 lightwhale.persistence=tmpfs lightwhale.debug");
        assert_eq!(o.persistence, PersistenceMode::Tmpfs);
        assert!(o.debug);
        assert!(o.unknown.is_empty());
    }

    #[test]
    fn last_value_wins() {
        let o = parse("lightwhale.persistence=tmpfs lightwhale.persistence=auto");
        assert_eq!(o.persistence, PersistenceMode::Auto);
    }

    #[test]
    fn settle_units() {
        assert_eq!(parse("lightwhale.settle=12").settle, Duration::from_secs(12));
        assert_eq!(parse("lightwhale.settle=1.5s").settle, Duration::from_millis(1500));
        assert_eq!(parse("lightwhale.settle=250ms").settle, Duration::from_millis(250));
    }

    #[test]
    fn the_kernel_command_line_carries_every_kspp_option_once() {
        let words: Vec<&str> = KERNEL_CMDLINE.split_whitespace().collect();
        for o in KSPP_OPTIONS {
            assert_eq!(words.iter().filter(|w| *w == o).count(), 1, "{o} in {KERNEL_CMDLINE:?}");
        }
        assert!(words.ends_with(&["proc_mem.force_override=never"]) && words[1] == "console=ttyS0,115200");
    }

    #[test]
    fn seccomp_log_mode() {
        assert_eq!(parse("lightwhale.seccomp=log").seccomp, crate::seccomp::Mode::Log);
        assert_eq!(parse("").seccomp, crate::seccomp::Mode::Enforce);
        assert_eq!(parse("lightwhale.seccomp=off").unknown, vec!["lightwhale.seccomp=off".to_string()]);
    }

    #[test]
    fn swap_on_by_default_and_off_on_request() {
        assert!(parse("console=ttyS0").swap);
        let o = parse("lightwhale.swap=off");
        assert!(!o.swap && o.unknown.is_empty());
        assert!(parse("lightwhale.swap=0 lightwhale.swap=1").swap);
        assert_eq!(parse("lightwhale.swap=maybe").unknown.len(), 1);
    }

    #[test]
    fn nocloud_on_by_default_and_off_on_request() {
        assert!(parse("console=ttyS0").nocloud);
        let o = parse("lightwhale.nocloud=off");
        assert!(!o.nocloud && o.unknown.is_empty());
        assert!(parse("lightwhale.nocloud=off lightwhale.nocloud=on").nocloud);
        assert_eq!(parse("lightwhale.nocloud=maybe lightwhale.nocloud").unknown.len(), 2);
    }

    #[test]
    fn typos_are_reported_not_ignored() {
        let o = parse("lightwhale.persistance=tmpfs lightwhale.settle=soon lightwhale.persistence=disk");
        assert_eq!(o.persistence, PersistenceMode::Auto);
        assert_eq!(o.unknown.len(), 3);
    }
}
