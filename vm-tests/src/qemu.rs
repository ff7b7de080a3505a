//! The QEMU command line for a Lightwhale machine. Shared by `cargo xtask qemu` (for
//! people) and the test harness, so both boot the image the same way.

use std::path::PathBuf;

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Hardware virtualisation: many times faster, where the host offers it.
    Kvm,
    /// Emulation: works everywhere (our build machines expose a /dev/kvm QEMU cannot use).
    Tcg,
}

impl Accel {
    /// Pure: KVM when /dev/kvm opens and the CPU has hardware virtualisation (vmx or svm
    /// among the flags in /proc/cpuinfo), TCG otherwise.
    pub fn choose(kvm_opens: bool, cpuinfo: &str) -> Accel {
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if kvm_opens && hw {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    /// LIGHTWHALE_ACCEL (kvm or tcg) if set, else what this host can do.
    pub fn detect() -> Accel {
        match std::env::var("LIGHTWHALE_ACCEL").as_deref() {
            Ok("kvm") => return Accel::Kvm,
            Ok("tcg") => return Accel::Tcg,
            _ => {}
        }
        let kvm_opens = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        Accel::choose(kvm_opens, &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iface {
    Ide,
    Virtio,
}

#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub iface: Iface,
    /// Writes go to a temporary overlay and are dropped: for attaching the ISO as a disk.
    pub snapshot: bool,
}

#[derive(Debug, Clone)]
pub enum Boot {
    /// The ISO as a CD-ROM (IDE on the BIOS machine, AHCI on q35).
    Cdrom(PathBuf),
    /// The ISO as a hard disk, as when it is written to a USB stick.
    IsoAsDisk(PathBuf, Iface),
    /// A disk the ISO was written to and that the guest writes to, as on a machine whose
    /// only disk holds the image and the persistence partition after it.
    WrittenDisk(PathBuf, Iface),
    /// Kernel and initrd straight from files: skips the firmware and boot loader, for
    /// tests that need kernel options. `initrd` is the two initrds concatenated (the
    /// kernel unpacks consecutive cpio archives; QEMU before 8 takes only one file).
    Kernel { kernel: PathBuf, initrd: PathBuf, append: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub boot: Boot,
    pub accel: Accel,
    pub uefi: bool,
    /// UEFI with Secure Boot enforced and Microsoft's keys enrolled, as on most PCs and
    /// servers sold today (implies `uefi`).
    pub secure_boot: bool,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Extra disks in order; the first IDE disk is the primary master.
    pub disks: Vec<Disk>,
    /// A cloud-init NoCloud seed image, attached read-only as a virtio disk.
    pub seed: Option<PathBuf>,
    /// (host port on 127.0.0.1, guest port)
    pub forwards: Vec<(u16, u16)>,
    /// Writable copy of the UEFI variable store (needed when `uefi`).
    pub ovmf_vars: Option<PathBuf>,
    /// QMP control socket.
    pub qmp: Option<PathBuf>,
    /// `-nographic` with the monitor on stdio (interactive use) instead of a bare serial line.
    pub interactive: bool,
    /// The real-time clock's start (`2001-01-01`, as QEMU's `-rtc base=`); None: now.
    pub rtc_base: Option<String>,
    /// A second NIC on a private segment shared with other machines.
    pub segment: Option<crate::segment::Port>,
    /// `-no-reboot`: the guest's reboot ends QEMU instead of resetting the machine in the
    /// same process (the test harness then starts a fresh one; see `Machine::reboot`).
    pub exit_on_reboot: bool,
    /// Under TCG, all vCPUs in one host thread (`thread=single`) instead of one thread each.
    pub single_thread_tcg: bool,
    /// Under TCG, guest time counts executed instructions (`-icount shift=0,sleep=off`:
    /// one nanosecond each, idle time skipped) instead of following the host's clock, so
    /// the guest's timings no longer move with the host's load (`cargo xtask bench
    /// --icount`). Implies `single_thread_tcg`; no effect with KVM.
    pub icount: bool,
}

/// Debian's OVMF (package ovmf); LIGHTWHALE_OVMF_CODE and LIGHTWHALE_OVMF_VARS point
/// elsewhere (the flake sets them to nixpkgs' OVMF).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The Secure Boot build (it needs SMM, so the variable store cannot be changed from the
/// guest) and a variable store with Secure Boot on and Microsoft's keys enrolled.
/// LIGHTWHALE_OVMF_SECBOOT_CODE and LIGHTWHALE_OVMF_MS_VARS point elsewhere.
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// The UEFI firmware code image.
pub fn ovmf_code(secure_boot: bool) -> PathBuf {
    match secure_boot {
        false => env_path("LIGHTWHALE_OVMF_CODE", OVMF_CODE),
        true => env_path("LIGHTWHALE_OVMF_SECBOOT_CODE", OVMF_SECBOOT_CODE),
    }
}

/// The UEFI variable store template (each machine boots a writable copy).
pub fn ovmf_vars(secure_boot: bool) -> PathBuf {
    match secure_boot {
        false => env_path("LIGHTWHALE_OVMF_VARS", OVMF_VARS),
        true => env_path("LIGHTWHALE_OVMF_MS_VARS", OVMF_MS_VARS),
    }
}

/// vCPUs and memory of the seed guide's machine, which every test machine has.
pub const VCPUS: u32 = 2;
pub const MEMORY_MB: u32 = 2048;

impl Config {
    /// The seed guide's machine: 2 GiB, 2 vCPUs, BIOS, ISO as CD-ROM, ports 10022/10080.
    pub fn new(boot: Boot) -> Config {
        Config {
            boot,
            accel: Accel::detect(),
            uefi: false,
            secure_boot: false,
            memory_mb: MEMORY_MB,
            cpus: VCPUS,
            disks: Vec::new(),
            seed: None,
            forwards: vec![(10022, 22), (10080, 80)],
            ovmf_vars: None,
            qmp: None,
            interactive: false,
            rtc_base: None,
            segment: None,
            exit_on_reboot: false,
            single_thread_tcg: false,
            icount: false,
        }
    }

    /// Whether the machine boots with UEFI firmware.
    pub fn is_uefi(&self) -> bool {
        self.uefi || self.secure_boot
    }

    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        push("-accel");
        push(match self.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg if self.single_thread_tcg || self.icount => "tcg,thread=single",
            Accel::Tcg => "tcg,thread=multi",
        });
        push("-machine");
        // OVMF's Secure Boot build keeps its variables in SMM-only flash: without that, a
        // guest could write its own keys and Secure Boot would prove nothing.
        push(match (self.is_uefi(), self.secure_boot) {
            (_, true) => "q35,smm=on",
            (true, false) => "q35",
            (false, false) => "pc",
        });
        if self.secure_boot {
            push("-global");
            push("driver=cfi.pflash01,property=secure,value=on");
        }
        push("-cpu");
        push(match self.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        });
        if self.icount && self.accel == Accel::Tcg {
            push("-icount");
            push("shift=0,sleep=off");
        }
        push("-m");
        push(&self.memory_mb.to_string());
        push("-smp");
        push(&self.cpus.to_string());
        if self.is_uefi() {
            push("-drive");
            push(&format!("if=pflash,format=raw,unit=0,readonly=on,file={}", ovmf_code(self.secure_boot).display()));
            if let Some(vars) = &self.ovmf_vars {
                push("-drive");
                push(&format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
            }
        }
        let mut ide_index = 0;
        // Disks first so the persistence disk is the IDE primary master, as in the guide.
        for d in &self.disks {
            drive(&mut a, &mut ide_index, &d.path, d.iface, false, d.snapshot);
        }
        if let Some(seed) = &self.seed {
            let p = seed.display().to_string().replace(',', ",,");
            a.push("-drive".into());
            a.push(format!("file={p},format=raw,if=virtio,readonly=on"));
        }
        match &self.boot {
            Boot::Cdrom(iso) => {
                // The secondary master, where `-cdrom` puts it.
                ide_index = ide_index.max(2);
                drive(&mut a, &mut ide_index, iso, Iface::Ide, true, false);
                a.push("-boot".into());
                a.push("d".into());
            }
            Boot::IsoAsDisk(iso, iface) | Boot::WrittenDisk(iso, iface) => {
                // bootindex: the firmware must try the image before any blank disk.
                let p = iso.display().to_string().replace(',', ",,");
                let snapshot = if matches!(self.boot, Boot::IsoAsDisk(..)) { "on" } else { "off" };
                a.push("-drive".into());
                a.push(format!("file={p},format=raw,snapshot={snapshot},if=none,id=bootiso"));
                a.push("-device".into());
                a.push(match iface {
                    Iface::Virtio => "virtio-blk-pci,drive=bootiso,bootindex=0".to_string(),
                    Iface::Ide => "ide-hd,drive=bootiso,bootindex=0".to_string(),
                });
            }
            Boot::Kernel { kernel, initrd, append } => {
                a.push("-kernel".into());
                a.push(kernel.display().to_string());
                a.push("-initrd".into());
                a.push(initrd.display().to_string());
                a.push("-append".into());
                a.push(append.clone());
            }
        }
        let fwd: String = self.forwards.iter().map(|(h, g)| format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}")).collect();
        a.push("-nic".into());
        a.push(format!("user,model=virtio-net-pci{fwd}"));
        if let Some(port) = &self.segment {
            a.extend(port.qemu_args("segment"));
        }
        if self.interactive {
            a.push("-nographic".into());
        } else {
            for s in ["-display", "none", "-serial", "stdio", "-monitor", "none"] {
                a.push(s.into());
            }
        }
        if self.exit_on_reboot {
            a.push("-no-reboot".into());
        }
        if let Some(base) = &self.rtc_base {
            a.push("-rtc".into());
            a.push(format!("base={base}"));
        }
        if let Some(q) = &self.qmp {
            a.push("-qmp".into());
            a.push(format!("unix:{},server=on,wait=off", q.display()));
        }
        a
    }
}

fn drive(a: &mut Vec<String>, ide_index: &mut u32, path: &std::path::Path, iface: Iface, cdrom: bool, snapshot: bool) {
    let p = path.display().to_string().replace(',', ",,");
    let mut spec = format!("file={p},format=raw");
    if snapshot {
        spec.push_str(",snapshot=on");
    }
    if cdrom {
        spec.push_str(",media=cdrom,readonly=on");
    }
    match iface {
        Iface::Ide => {
            spec.push_str(&format!(",if=ide,index={ide_index}"));
            *ide_index += 1;
        }
        Iface::Virtio => spec.push_str(",if=virtio"),
    }
    a.push("-drive".into());
    a.push(spec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_only_with_a_usable_device_and_hardware_virtualisation() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse\n";
        let none = "processor\t: 0\nflags\t\t: fpu vme de pse sse\n";
        assert_eq!(Accel::choose(true, intel), Accel::Kvm);
        assert_eq!(Accel::choose(true, "flags : svm\n"), Accel::Kvm);
        // Our build machines: /dev/kvm opens, but the CPU has neither flag.
        assert_eq!(Accel::choose(true, none), Accel::Tcg);
        assert_eq!(Accel::choose(false, intel), Accel::Tcg);
        // "vmx" only counts as a whole flag on a flags line.
        assert_eq!(Accel::choose(true, "model name : vmxfoo\nflags : vmxx\n"), Accel::Tcg);
    }

    #[test]
    fn guide_machine_has_cdrom_and_forwards() {
        let mut c = Config::new(Boot::Cdrom("out/lightwhale.iso".into()));
        c.accel = Accel::Tcg;
        c.disks.push(Disk { path: "persistence.img".into(), iface: Iface::Ide, snapshot: false });
        let a = c.args().join(" ");
        assert!(a.contains("-drive file=persistence.img,format=raw,if=ide,index=0"), "{a}");
        assert!(a.contains("file=out/lightwhale.iso,format=raw,media=cdrom,readonly=on,if=ide,index=2"), "{a}");
        assert!(a.contains("-boot d"));
        assert!(a.contains("hostfwd=tcp:127.0.0.1:10022-:22,hostfwd=tcp:127.0.0.1:10080-:80"));
        assert!(a.contains("-m 2048"));
        assert!(a.contains("-accel tcg"));
        assert!(!a.contains("-no-reboot"), "a reboot resets the machine unless asked otherwise: {a}");
        c.exit_on_reboot = true;
        assert!(c.args().contains(&"-no-reboot".to_string()));
        assert!(a.contains("-accel tcg,thread=multi"), "{a}");
        c.single_thread_tcg = true;
        assert!(c.args().join(" ").contains("-accel tcg,thread=single"));
        assert!(!a.contains("-icount"), "{a}");
    }

    #[test]
    fn icount_is_single_threaded_tcg_only() {
        let mut c = Config::new(Boot::Cdrom("x.iso".into()));
        c.icount = true;
        c.accel = Accel::Tcg;
        let a = c.args().join(" ");
        assert!(a.contains("-accel tcg,thread=single") && a.contains("-icount shift=0,sleep=off"), "{a}");
        c.accel = Accel::Kvm;
        assert!(!c.args().join(" ").contains("-icount"));
    }

    #[test]
    fn a_seed_is_a_read_only_virtio_disk() {
        let mut c = Config::new(Boot::Cdrom("x.iso".into()));
        c.seed = Some("seed.iso".into());
        assert!(c.args().join(" ").contains("-drive file=seed.iso,format=raw,if=virtio,readonly=on"));
    }

    #[test]
    fn uefi_uses_q35_and_ovmf() {
        let mut c = Config::new(Boot::IsoAsDisk("x.iso".into(), Iface::Virtio));
        c.uefi = true;
        c.ovmf_vars = Some("vars.fd".into());
        let a = c.args().join(" ");
        assert!(a.contains("-machine q35"));
        assert!(a.contains(OVMF_CODE));
        assert!(a.contains("file=vars.fd"));
        assert!(a.contains(
            "file=x.iso,format=raw,snapshot=on,if=none,id=bootiso -device virtio-blk-pci,drive=bootiso,bootindex=0"
        ));
        assert!(!a.contains("smm=on") && !a.contains("secure"), "{a}");
    }

    #[test]
    fn secure_boot_locks_the_firmware_flash() {
        let mut c = Config::new(Boot::IsoAsDisk("x.iso".into(), Iface::Virtio));
        c.secure_boot = true;
        c.ovmf_vars = Some("vars.fd".into());
        let a = c.args().join(" ");
        assert!(a.contains("-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on"), "{a}");
        assert!(a.contains(&format!("readonly=on,file={OVMF_SECBOOT_CODE}")), "{a}");
        assert!(a.contains("unit=1,file=vars.fd"), "{a}");
    }
}
