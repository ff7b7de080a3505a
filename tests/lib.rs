//! Host-side tests that cross crates: the persistence code of the init driven against real
//! block devices (loop devices over sparse files). See `tests/*.rs`; they need root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A sparse file attached to a loop device with partition scanning; detached on drop.
pub struct LoopDisk {
    pub file: PathBuf,
    pub name: String,
}

impl LoopDisk {
    pub fn new(tag: &str, bytes: u64, first_bytes: &[u8]) -> LoopDisk {
        let dir = std::env::temp_dir().join("lightwhale-host-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{tag}-{}.img", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(bytes).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(first_bytes, 0).unwrap();
        drop(f);
        let out = Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(&file)
            .output()
            .expect("losetup (util-linux)");
        assert!(out.status.success(), "losetup failed (needs root): {}", String::from_utf8_lossy(&out.stderr));
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let name = dev.trim_start_matches("/dev/").to_string();
        LoopDisk { file, name }
    }

    pub fn dev(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }

    pub fn sha256(&self) -> String {
        let out = Command::new("sha256sum").arg(&self.file).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
    }

    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&self.file).unwrap();
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset).unwrap();
        buf
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(self.dev()).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `mke2fs` as the image runs it (the same arguments), but the host's binary.
pub fn host_mkfs(part: &Path, fs_bytes: Option<u64>) -> Result<(), String> {
    let out = Command::new("mke2fs")
        .args(lightwhale_init::persist::claim::mkfs_args(part, fs_bytes))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A DOS partition table (sector 0) with Linux partitions at these (start, length) in
/// 512-byte sectors, as `sfdisk` or a hybrid ISO's MBR would hold them.
pub fn mbr(partitions: &[(u32, u32)]) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    for (i, (start, len)) in partitions.iter().enumerate() {
        let e = 446 + 16 * i;
        s[e + 4] = 0x83;
        s[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        s[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// The whole disk and its first four partitions, as the init's scan reports them.
pub fn scan_reports(d: &LoopDisk) -> Vec<lightwhale_init::persist::DeviceReport> {
    use lightwhale_init::persist::scan;
    let sys = Path::new("/sys/class/block");
    let mut names = vec![d.name.clone()];
    for n in 1..5 {
        let p = scan::partition_name(&d.name, n);
        if sys.join(&p).exists() {
            names.push(p);
        }
    }
    names.iter().filter_map(|n| scan::describe(sys, n)).map(|b| scan::probe(Path::new("/dev"), &b)).collect()
}

pub fn blkid(dev: &Path, tag: &str) -> String {
    let out = Command::new("blkid").args(["-p", "-s", tag, "-o", "value"]).arg(dev).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
